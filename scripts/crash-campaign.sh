#!/usr/bin/env bash
# The crash-consistency campaign at scale: SIGKILL cycles with writers running, and
# one-bit WAL flips after a SIGKILL, each checked for silent loss (see
# crates/atrest-cli/tests/crash.rs). Usage: scripts/crash-campaign.sh [CYCLES] (default 50);
# ATREST_CRASH_SEED=N replays a run.
set -euo pipefail
cd "$(dirname "$0")/.."
export ATREST_CRASH_CYCLES="${1:-50}"
cargo test --release -p atrest-cli --test crash -- --nocapture --test-threads=1
