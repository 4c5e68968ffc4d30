#!/usr/bin/env python3
"""facegate's per-stage latency next to LiteRT's own Python interpreter, same model files,
same machine, same session: rounds alternate between the two so that load from other
processes hits both alike. Reports medians over rounds and the ratios.

LiteRT's time for a model is taken three ways (models-tflite/build/reference_latency.py):
"hot" (the model invoked back to back), "in turn" (the three models invoked one after
the other) and "in the pipeline" (the interpreter inside the same sequence as facegate's
pipeline: decode the frame, letterbox, detect, crop, mask, embed twice). A stage is
compared with the last: the model then finds the caches as the stage's own run does.

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


def stage_of(model_file):
    """The pipeline stage that runs a model file."""
    return "detect" if "detection" in model_file else "embed" if "dlib" in model_file else "mask"


def venv_python():
    venv = os.path.join(ROOT, "target", "bench-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "ai-edge-litert==2.1.4", "numpy",
                        "pillow==13.0.0"], check=True)
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
        interleaved = json.loads(out)
        by_stage = {stage_of(f): f for f in files}
        face = ",".join(str(v) for v in report["face_box"])
        out = subprocess.run([py, os.path.join(ROOT, "models-tflite", "build", "reference_latency.py"),
                              "--json", "--pipeline", report["image"], "--face", face,
                              "-n", str(args.iterations),
                              by_stage["detect"], by_stage["mask"], by_stage["embed"]],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        theirs.append({"hot": hot, "interleaved": interleaved, "pipeline": json.loads(out)})

    def med(values):
        return statistics.median(values)

    rows = []
    for f in ours[0]["model_run_median_ms"]:
        stage = stage_of(f)
        litert = med([t["hot"][f] for t in theirs])
        litert_inter = med([t["interleaved"][f] for t in theirs])
        litert_pipe = med([t["pipeline"][f] for t in theirs])
        run = med([o["model_run_median_ms"][f] for o in ours])
        run_inter = med([o["model_run_interleaved_median_ms"][f] for o in ours])
        run_pipe = med([o["model_run_in_position_median_ms"][stage] for o in ours])
        st = med([o["stages_median_ms"][stage] for o in ours])
        runs_per_stage = 2 if stage == "embed" and ours[0]["flip_average"] else 1
        rows.append({
            "model": f, "stage": stage, "model_runs_per_stage": runs_per_stage,
            "litert_python_invoke_ms": litert, "facegate_model_run_ms": run, "run_ratio": run / litert,
            "litert_python_interleaved_ms": litert_inter, "facegate_interleaved_run_ms": run_inter,
            "interleaved_run_ratio": run_inter / litert_inter,
            # Both per stage (the embedder: its runs of one iteration summed).
            "litert_python_in_pipeline_ms": litert_pipe, "facegate_run_in_pipeline_ms": run_pipe,
            "in_pipeline_run_ratio": run_pipe / litert_pipe,
            "facegate_stage_ms": st,
            # The figure: the stage over LiteRT's invoke where it sits in the same
            # sequence of stages.
            "stage_over_litert_in_pipeline": st / litert_pipe,
            # What the stage adds to our own model run in the same place, per iteration.
            "stage_over_our_run_in_pipeline": med([o["stage_over_model_run_median"][stage] for o in ours]),
            # Against LiteRT's hot loop (nothing runs between its invokes): stricter than
            # any pipeline can be, shown for completeness.
            "stage_over_litert_hot": st / (litert * runs_per_stage),
        })
    other = {s: med([o["stages_median_ms"][s] for o in ours]) for s in ("decode", "align")}
    summary = {"rounds": args.rounds, "iterations": args.iterations, "models": rows,
               "stages_without_a_model_ms": other, "image": ours[0]["image"]}
    print("median ms per stage; LiteRT = Python Interpreter.invoke(); 'hot' = one model invoked "
          "back to back; 'pipeline' = inside the same sequence of stages (embed: its two runs)")
    print(f"{'stage':7} {'LiteRT hot':>10} {'ours hot':>9} {'LiteRT pipeline':>15} {'ours pipeline':>13} "
          f"{'our stage':>10} {'stage/LiteRT pipeline':>21} {'stage/our run':>13} {'stage/LiteRT hot':>16}")
    for r in rows:
        print(f"{r['stage']:7} {r['litert_python_invoke_ms']:10.3f} {r['facegate_model_run_ms']:9.3f} "
              f"{r['litert_python_in_pipeline_ms']:15.3f} {r['facegate_run_in_pipeline_ms']:13.3f} "
              f"{r['facegate_stage_ms']:10.3f} {r['stage_over_litert_in_pipeline']:21.3f} "
              f"{r['stage_over_our_run_in_pipeline']:13.3f} {r['stage_over_litert_hot']:16.3f}")
    print(f"decode {other['decode']:.3f} ms, align {other['align']:.3f} ms (no model)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
