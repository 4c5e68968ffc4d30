#!/usr/bin/env bash
# `facegate bench index` next to a one-thread numpy f32 scan of the same size, in turns,
# in one run (the machine is shared: compare the ratio, not the absolute figures).
#
#   tests/bench/index_vs_numpy.sh [SIZES...]      # default: 10000 100000 1000000
#   RUNS=5 tests/bench/index_vs_numpy.sh 10000      # 5 alternated pairs, then the medians
#   FACEGATE_BIN=/path/to/facegate ...             # another build (default: release)
#
# Creates its own Python environment with numpy under target/bench-venv (from PyPI) and
# uses the release binary (built if missing). Prints a table (one row per pair, and with
# RUNS > 1 a "median" row: the median of each column, the ratio being the median of the
# pairs' ratios) and writes the JSON lines to target/bench-index/results.jsonl. On a
# shared VM one process can run 1.4x slower than the next for minutes (a neighbour on the
# same core): compare ratios of pairs, and use RUNS to see the spread.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
venv="$root/target/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet numpy
fi
runs=${RUNS:-1}
bin=${FACEGATE_BIN:-$root/target/release/facegate}
[ -x "$bin" ] || cargo build --release --quiet
out="$root/target/bench-index"
mkdir -p "$out"
: >"$out/results.jsonl"
# One thread for every BLAS numpy may use.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 BLIS_NUM_THREADS=1
printf '%-10s %14s %14s %8s %16s %16s %10s\n' templates facegate_ms numpy_ms ratio \
    facegate_B/tmpl numpy_B/tmpl recall@1
for n in "${sizes[@]}"; do
    for _ in $(seq "$runs"); do
        fg=$("$bin" bench index --templates "$n" --json)
        np=$("$venv/bin/python" "$root/tests/bench/index_numpy.py" --templates "$n")
        echo "$fg" >>"$out/results.jsonl"
        echo "$np" >>"$out/results.jsonl"
        python3 - "$fg" "$np" <<'PY'
import json, sys
f, n = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("%-10d %14.3f %14.3f %8.2f %16.1f %16.1f %10.3f" % (
    f["templates"], f["search_ms_median"], n["search_ms_median"],
    f["search_ms_median"] / n["search_ms_median"], f["bytes_per_template"],
    n["bytes_per_template"], f["recall_at_1"]))
PY
    done
    if [ "$runs" -gt 1 ]; then
        python3 - "$out/results.jsonl" "$n" "$runs" <<'PY'
import json, statistics, sys
path, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(line) for line in open(path)]
ours = [r for r in rows if "numpy" not in r and r["templates"] == n][-runs:]
theirs = [r for r in rows if "numpy" in r and r["templates"] == n][-runs:]
med = statistics.median
ratio = med(f["search_ms_median"] / p["search_ms_median"] for f, p in zip(ours, theirs))
print("%-10s %14.3f %14.3f %8.2f %16.1f %16.1f %10.3f" % (
    "median", med(f["search_ms_median"] for f in ours),
    med(p["search_ms_median"] for p in theirs), ratio,
    med(f["bytes_per_template"] for f in ours), med(p["bytes_per_template"] for p in theirs),
    min(f["recall_at_1"] for f in ours)))
PY
    fi
done
