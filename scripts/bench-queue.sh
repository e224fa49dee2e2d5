#!/usr/bin/env bash
# Benchmarks our job queue against graphile-worker on the same local Postgres,
# in one run, and prints a markdown comparison.
#
#   scripts/bench-queue.sh             run both benches (env JOBS, LAT, ROUNDS)
#   scripts/bench-queue.sh --combine   only build the tables from RESULT lines
#                                      on stdin (other lines are ignored)
#
# Both benches print lines such as
#   RESULT <impl> burn workers=4 batch=10 jobs=100000 seconds=12.34 jobs_per_s=8103.7
#   RESULT <impl> latency n=1000 p50_ms=1.23 p95_ms=2.34 p99_ms=3.45
# with <impl> = wordup | graphile. Everything else they print goes to stderr, so
# stdout is just the report. The two run in ROUNDS rounds (default 3), taking
# turns at going first, and the tables give each figure's median over the
# rounds with its range: on a shared 2-core machine one run of each is noise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GRAPHILE_DIR="$ROOT/scripts/bench/graphile"

combine() {
    python3 -c '
import sys

import statistics

burn, lat, jobs = {}, {}, set()
for line in sys.stdin:
    f = line.split()
    if len(f) < 3 or f[0] != "RESULT":
        continue
    impl, kind = f[1], f[2]
    kv = dict(p.split("=", 1) for p in f[3:] if "=" in p)
    if kind == "burn":
        burn.setdefault((int(kv["workers"]), int(kv["batch"]), impl), []).append(float(kv["jobs_per_s"]))
        jobs.add(kv["jobs"])
    elif kind == "latency":
        for p in ("p50", "p95", "p99"):
            lat.setdefault((p, impl), []).append(float(kv[p + "_ms"]))

def med(values):
    return None if not values else statistics.median(values)

def cell(values, digits):
    if not values:
        return "-"
    m = f"{med(values):.{digits}f}"
    return m if len(values) == 1 else f"{m} ({min(values):.{digits}f}–{max(values):.{digits}f})"

rounds = max((len(v) for v in list(burn.values()) + list(lat.values())), default=0)
print(f"Medians of {rounds} round(s), range in brackets.")
print()

def ratio(num, den):
    return "n/a" if num is None or den is None or den == 0 else f"{num / den:.2f}x"

n_jobs = "/".join(sorted(jobs)) or "?"
print(f"### Burn-down throughput ({n_jobs} no-op jobs, queued up front)")
print()
print("| workers | batch | wordup jobs/s | graphile-worker jobs/s | ratio (wordup/graphile, >1 = wordup faster) |")
print("|---:|---:|---:|---:|---:|")
for w, b in sorted({(w, b) for (w, b, _) in burn}):
    ours, theirs = burn.get((w, b, "wordup")), burn.get((w, b, "graphile"))
    print(f"| {w} | {b} | {cell(ours, 1)} | {cell(theirs, 1)} | {ratio(med(ours), med(theirs))} |")
print()
print("### Pickup latency (commit of enqueue -> handler start, one job at a time)")
print()
print("| percentile | wordup ms | graphile-worker ms | ratio (graphile/wordup, >1 = wordup faster) |")
print("|---|---:|---:|---:|")
for p in ("p50", "p95", "p99"):
    ours, theirs = lat.get((p, "wordup")), lat.get((p, "graphile"))
    print(f"| {p} | {cell(ours, 2)} | {cell(theirs, 2)} | {ratio(med(theirs), med(ours))} |")
'
}

if [[ "${1:-}" == "--combine" ]]; then
    combine
    exit 0
fi
if [[ $# -gt 0 ]]; then
    echo "usage: $0 [--combine]   (env: JOBS, LAT)" >&2
    exit 2
fi

JOBS="${JOBS:-100000}"
LAT="${LAT:-1000}"
cd "$ROOT"

DATABASE_URL="$(./scripts/postgres.sh | tail -n1)"
export DATABASE_URL

if [[ ! -d "$GRAPHILE_DIR/node_modules" ]]; then
    echo "bench-queue: installing graphile-worker" >&2
    (cd "$GRAPHILE_DIR" && npm ci --silent)
fi

results="$(mktemp)"
trap 'rm -f "$results"' EXIT

# RESULT lines are kept for the tables (and echoed to stderr as progress);
# anything else is passed through to stderr.
collect() {
    awk -v out="$results" '
        /^RESULT / { print >> out; close(out) }
        { print > "/dev/stderr"; fflush("/dev/stderr") }
    '
}

ROUNDS="${ROUNDS:-3}"
cargo build --release -q -p wordup-tests --bin queue-bench
run_wordup() {
    echo "bench-queue: round $1: wordup queue-bench (jobs=$JOBS latency-jobs=$LAT)" >&2
    "$ROOT/target/release/queue-bench" --jobs "$JOBS" --latency-jobs "$LAT" | collect
}
run_graphile() {
    echo "bench-queue: round $1: graphile-worker bench (jobs=$JOBS latency-jobs=$LAT)" >&2
    node "$GRAPHILE_DIR/bench.mjs" --jobs "$JOBS" --latency-jobs "$LAT" | collect
}
for round in $(seq 1 "$ROUNDS"); do
    # Take turns at going first, so that neither always meets a warm (or a
    # freshly vacuumed) server.
    if (( round % 2 )); then
        run_wordup "$round"; run_graphile "$round"
    else
        run_graphile "$round"; run_wordup "$round"
    fi
done

pg_version="$(psql "$DATABASE_URL" -tAc 'SELECT version()')"
graphile_version="$(node -p 'require(process.argv[1]).version' "$GRAPHILE_DIR/node_modules/graphile-worker/package.json")"
echo "## Queue benchmark: wordup vs graphile-worker $graphile_version"
echo
echo "- Postgres: $pg_version"
echo "- nproc: $(nproc)"
echo "- rounds: $ROUNDS"
echo "- node: $(node --version)"
echo
combine < "$results"
