#!/usr/bin/env bash
# `facegate bench index` next to a one-thread numpy f32 scan of the same size, in turns,
# in one run (the machine is shared: compare the ratio, not the absolute figures).
#
#   tests/bench/index_vs_numpy.sh [SIZES...]      # default: 10000 100000 1000000
#
# Creates its own Python environment with numpy under target/bench-venv (from PyPI) and
# uses the release binary (built if missing). Prints a table and writes the JSON lines
# to target/bench-index/results.jsonl.
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
bin="$root/target/release/facegate"
[ -x "$bin" ] || cargo build --release --quiet
out="$root/target/bench-index"
mkdir -p "$out"
: >"$out/results.jsonl"
# One thread for every BLAS numpy may use.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 BLIS_NUM_THREADS=1
printf '%-10s %14s %14s %8s %16s %16s %10s\n' templates facegate_ms numpy_ms ratio \
    facegate_B/tmpl numpy_B/tmpl recall@1
for n in "${sizes[@]}"; do
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
