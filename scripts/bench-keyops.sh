#!/usr/bin/env bash
# Key operations and get-secret under an outside load (wrk, keep-alive, TLS) against a real
# `atrest serve`, each as a ratio to the same server's bare /healthz measured in the same
# round, with the server's own CPU time per request (from /proc). Rounds are interleaved;
# the table gives medians.
#
#   scripts/bench-keyops.sh [PATH_TO_ATREST]     (default: target/release/atrest)
#   ROUNDS=3 SECS=3 CONC="1 16 64" DATA_PARENT=/tmp DATABASE=postgres://… scripts/bench-keyops.sh
#
# Needs wrk (Debian: apt-get install wrk), curl and python3. The load generator runs on the
# same machine: on 2 cores wrk and the server share them, so the numbers are a floor.
set -euo pipefail
bin=$(realpath "${1:-target/release/atrest}")
rounds=${ROUNDS:-3}
secs=${SECS:-3}
conc=${CONC:-1 16 64}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
dir=$(mktemp -d "${DATA_PARENT:-/tmp}/atrest-keyops.XXXXXX")
port=$(( 20000 + RANDOM % 20000 ))
db_args=()
if [ -n "${DATABASE:-}" ]; then db_args=(--database "$DATABASE"); fi
"$bin" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" --rate-limit 0 "${db_args[@]}" >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  [ -s "$dir/data/admin.token" ] && grep -q serving "$dir/serve.log" && break
  sleep 0.2
done
token=$(cat "$dir/data/admin.token")
url="https://127.0.0.1:$port"
api() { curl -sf --cacert "$dir/data/tls/ca.pem" -H "Authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
payload=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
api -X POST -d '{"kty":"oct"}' "$url/keys/oct/create?api-version=7.5" >/dev/null
api -X POST -d '{"kty":"RSA","key_size":2048}' "$url/keys/rsa/create?api-version=7.5" >/dev/null
value=$(python3 -c 'print("s" * 1024)')
api -X PUT -d "{\"value\":\"$value\"}" "$url/secrets/bench?api-version=7.5" >/dev/null
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
oct_wrapped=$(api -X POST -d "{\"alg\":\"A256KW\",\"value\":\"$payload\"}" "$url/keys/oct//wrapkey?api-version=7.5" | field value)
rsa_wrapped=$(api -X POST -d "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$payload\"}" "$url/keys/rsa//wrapkey?api-version=7.5" | field value)
gcm=$(api -X POST -d "{\"alg\":\"A256GCM\",\"value\":\"$payload\"}" "$url/keys/oct//encrypt?api-version=7.5")
gcm_body=$(echo "$gcm" | python3 -c 'import json,sys; g=json.load(sys.stdin); print(json.dumps({"alg":"A256GCM","value":g["value"],"iv":g["iv"],"tag":g["tag"]}))')
lua() { printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1")" >"$dir/$2.lua"; }
lua "{\"alg\":\"A256KW\",\"value\":\"$payload\"}" wrap
lua "{\"alg\":\"A256KW\",\"value\":\"$oct_wrapped\"}" unwrap
lua "{\"alg\":\"A256GCM\",\"value\":\"$payload\"}" encrypt
lua "$gcm_body" decrypt
lua "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$rsa_wrapped\"}" rsa
# name | path | script ("" = GET)
ops=(
  "healthz|/healthz|"
  "oct wrapKey A256KW|/keys/oct//wrapkey?api-version=7.5|wrap"
  "oct unwrapKey A256KW|/keys/oct//unwrapkey?api-version=7.5|unwrap"
  "oct encrypt A256GCM|/keys/oct//encrypt?api-version=7.5|encrypt"
  "oct decrypt A256GCM|/keys/oct//decrypt?api-version=7.5|decrypt"
  "RSA-2048 unwrapKey RSA-OAEP-256|/keys/rsa//unwrapkey?api-version=7.5|rsa"
  "get-secret 1 KiB|/secrets/bench/?api-version=7.5|"
)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
tck=$(getconf CLK_TCK)
results="$dir/results.tsv"
: >"$results"
for r in $(seq 1 "$rounds"); do
  for c in $conc; do
    t=$(( c < 2 ? 1 : 2 ))
    for op in "${ops[@]}"; do
      IFS='|' read -r name path script <<<"$op"
      args=(-t"$t" -c"$c" -d"${secs}s" --latency -H "Authorization: Bearer $token")
      [ -n "$script" ] && args+=(-s "$dir/$script.lua")
      c0=$(cpu)
      out=$(wrk "${args[@]}" "$url$path" 2>&1)
      c1=$(cpu)
      n=$(echo "$out" | awk '/requests in/{print $1}')
      bad=$(echo "$out" | awk '/Non-2xx/{print $5}')
      rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
      p50=$(echo "$out" | awk '$1=="50%"{print $2}')
      p99=$(echo "$out" | awk '$1=="99%"{print $2}')
      cpu_us=$(python3 -c "print(round(($c1-$c0)*1e6/$tck/max(1,$n)))")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$rps" "$p50" "$p99" "$cpu_us" "${bad:-0}" >>"$results"
    done
  done
done
python3 - "$results" <<'PY'
import statistics, sys
def ms(s):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * f
    return float("nan")
rows = {}
for line in open(sys.argv[1]):
    name, c, rps, p50, p99, cpu, bad = line.rstrip("\n").split("\t")
    rows.setdefault((name, int(c)), []).append((float(rps), ms(p50), ms(p99), int(cpu), int(bad)))
med = lambda xs: statistics.median(xs)
print("| operation | concurrency | req/s | p50 ms | p99 ms | /healthz req/s | ÷ /healthz | server CPU µs/request | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (name, c), v in rows.items():
    h = med([x[0] for x in rows[("healthz", c)]])
    r = med([x[0] for x in v])
    print(f"| {name} | {c} | {r:.0f} | {med([x[1] for x in v]):.2f} | {med([x[2] for x in v]):.2f} | {h:.0f} | "
          f"{r / h:.3f} | {med([x[3] for x in v])} | {sum(x[4] for x in v)} |")
PY
