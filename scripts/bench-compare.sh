#!/usr/bin/env bash
# Before/after: builds the `rps` and `data` benchmarks of two commits and runs them in
# interleaved rounds (old, new, old, new, …) on this machine, then prints, for every rate
# column of every table row, the median of each side and new ÷ old.
#
#   scripts/bench-compare.sh OLD [NEW]        (NEW defaults to HEAD)
#
# ATREST_BENCH_ROUNDS (default 5) rounds; each run uses ATREST_BENCH_SECS (default 2) per
# cell and a small data bench (64 MiB blobs, 1,000 objects, no multi-GiB blob) so that a
# round takes about a minute per side. Output: every run's tables under $OUT (default a
# temporary directory), the comparison on stdout.
set -euo pipefail
old=${1:?usage: scripts/bench-compare.sh OLD [NEW]}
new=${2:-HEAD}
rounds=${ATREST_BENCH_ROUNDS:-5}
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d /tmp/atrest-bench-compare.XXXXXX)
out=${OUT:-$work/out}
mkdir -p "$out"
export ATREST_BENCH_SECS=${ATREST_BENCH_SECS:-2} ATREST_BENCH_BLOB_MIB=${ATREST_BENCH_BLOB_MIB:-64}
export ATREST_BENCH_MAX_OBJECTS=${ATREST_BENCH_MAX_OBJECTS:-1000} ATREST_BENCH_BIG_GIB=${ATREST_BENCH_BIG_GIB:-0}
cleanup() {
    for side in old new; do git -C "$root" worktree remove --force "$work/$side" 2>/dev/null || true; done
}
trap cleanup EXIT

# One target directory for both: the dependencies build once; the workspace crates of
# each worktree are distinct packages (their paths differ), so neither overwrites the other.
for side in old new; do
    rev=$old
    [ "$side" = new ] && rev=$new
    git -C "$root" worktree add --detach "$work/$side" "$rev" >/dev/null
    (cd "$work/$side" && CARGO_TARGET_DIR="$root/target" cargo bench -p atrest-server --bench rps --bench data \
        --no-run --message-format=json 2>/dev/null) |
        python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("executable") and "bench" in m.get("target", {}).get("kind", []):
        print(m["target"]["name"], m["executable"])' >"$work/$side.bins"
    echo "built $side ($rev): $(tr '\n' ' ' <"$work/$side.bins")" >&2
done

for i in $(seq 1 "$rounds"); do
    for bench in rps data; do
        for side in old new; do
            bin=$(awk -v b="$bench" '$1 == b {print $2}' "$work/$side.bins")
            echo "round $i: $bench $side" >&2
            ATREST_BENCH_DIR=$work "$bin" --bench >"$out/$bench-$side-$i.md" 2>/dev/null
        done
    done
done

python3 - "$out" "$rounds" <<'EOF'
import re, statistics, sys, pathlib
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def num(c):
    try: return float(c.replace(",", ""))
    except ValueError: return None
def rows(path):
    header, res = None, {}
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        label = " / ".join(c for c in cells if num(c) is None) or "-"
        # A concurrency column is part of the label, not a result.
        for h, c in zip(header, cells):
            if h.lower() == "concurrency" and num(c) is not None:
                label += f" @{h[0]}{c}"
        for h, c in zip(header, cells):
            v = num(c)
            if v is not None and re.search(r"/s|req|rate", h) and "raw" not in h.lower():
                res[(label, h)] = v
    return res
print("| bench | row | column | old (median) | new (median) | new ÷ old |")
print("|---|---|---|---:|---:|---:|")
for bench in ("rps", "data"):
    runs = {s: [rows(out / f"{bench}-{s}-{i}.md") for i in range(1, rounds + 1)] for s in ("old", "new")}
    keys = [k for k in runs["old"][0] if all(k in r for r in runs["old"] + runs["new"])]
    for k in keys:
        o = statistics.median(r[k] for r in runs["old"])
        n = statistics.median(r[k] for r in runs["new"])
        print(f"| {bench} | {k[0]} | {k[1]} | {o:.4g} | {n:.4g} | {n / o if o else float('nan'):.3f} |")
EOF
