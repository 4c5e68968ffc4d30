#!/usr/bin/env python3
"""facegate's per-stage latency next to LiteRT's own Python interpreter, same model files,
same machine, same session: rounds alternate between the two so that load from other
processes hits both alike. Reports medians over rounds and the ratios.

    python3 tests/bench/stages_vs_litert.py [--rounds 3] [--iterations 300]
        [--python PY]   # a Python with ai-edge-litert==2.1.4 and numpy
                        # (default: creates target/bench-venv with pip)

Needs a release build (cargo build --release) and .litert/<arch>/libLiteRt.so.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def venv_python():
    venv = os.path.join(ROOT, "target", "bench-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "ai-edge-litert==2.1.4", "numpy"], check=True)
    return py


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--python")
    args = ap.parse_args()
    py = args.python or venv_python()
    exe = os.path.join(ROOT, "target", "release", "facegate")
    ours, theirs = [], []
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: facegate bench", file=sys.stderr)
        out = subprocess.run([exe, "bench", "--json", "--iterations", str(args.iterations)],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        report = json.loads(out)
        ours.append(report)
        files = [os.path.join(ROOT, "models-tflite", f) for f in report["model_run_median_ms"]]
        print(f"round {r + 1}/{args.rounds}: LiteRT Python interpreter", file=sys.stderr)
        out = subprocess.run([py, os.path.join(ROOT, "models-tflite", "build", "reference_latency.py"),
                              "--json", "-n", str(args.iterations), *files],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        hot = json.loads(out)
        out = subprocess.run([py, os.path.join(ROOT, "models-tflite", "build", "reference_latency.py"),
                              "--json", "--interleave", "-n", str(args.iterations), *files],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        theirs.append({"hot": hot, "interleaved": json.loads(out)})

    def med(values):
        return statistics.median(values)

    stage_of_model = {}
    for f in ours[0]["model_run_median_ms"]:
        stage_of_model[f] = "detect" if "detection" in f else "embed" if "dlib" in f else "mask"
    rows = []
    for f, stage in stage_of_model.items():
        litert = med([t["hot"][f] for t in theirs])
        litert_inter = med([t["interleaved"][f] for t in theirs])
        run = med([o["model_run_median_ms"][f] for o in ours])
        run_inter = med([o["model_run_interleaved_median_ms"][f] for o in ours])
        st = med([o["stages_median_ms"][stage] for o in ours])
        # Stage over our bare run, sampled per iteration under the same load, times our
        # run over LiteRT's: the stage's cost relative to LiteRT's own invoke.
        over_run = med([o["stage_over_model_run_median"][stage] for o in ours])
        runs_per_stage = 2 if stage == "embed" and ours[0]["flip_average"] else 1
        rows.append({
            "model": f, "stage": stage,
            "litert_python_invoke_ms": litert, "facegate_model_run_ms": run, "run_ratio": run / litert,
            "litert_python_interleaved_ms": litert_inter, "facegate_interleaved_run_ms": run_inter,
            "interleaved_run_ratio": run_inter / litert_inter,
            "facegate_stage_ms": st, "model_runs_per_stage": runs_per_stage,
            "stage_ratio_vs_interleaved": st / (litert_inter * runs_per_stage),
            "stage_over_our_run": over_run,
            "stage_over_litert": over_run * (run_inter / litert_inter),
        })
    other = {s: med([o["stages_median_ms"][s] for o in ours]) for s in ("decode", "align")}
    summary = {"rounds": args.rounds, "iterations": args.iterations, "models": rows,
               "stages_without_a_model_ms": other, "image": ours[0]["image"]}
    print("median ms; 'hot' = one model invoked repeatedly, 'in turn' = the three models invoked in turn")
    print(f"{'stage':7} {'model':34} {'LiteRT hot':>10} {'ours hot':>9} {'ratio':>6} "
          f"{'LiteRT in turn':>14} {'ours in turn':>12} {'ratio':>6} {'our stage':>10} {'stage/LiteRT':>12}")
    print("(stage/LiteRT = per-iteration stage/our-run ratio x our-run/LiteRT ratio, both in turn)")
    for r in rows:
        print(f"{r['stage']:7} {r['model']:34} {r['litert_python_invoke_ms']:10.3f} {r['facegate_model_run_ms']:9.3f} "
              f"{r['run_ratio']:6.2f} {r['litert_python_interleaved_ms']:14.3f} {r['facegate_interleaved_run_ms']:12.3f} "
              f"{r['interleaved_run_ratio']:6.2f} {r['facegate_stage_ms']:10.3f} {r['stage_over_litert']:12.2f}")
    print(f"decode {other['decode']:.3f} ms, align {other['align']:.3f} ms (no model)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
