#!/usr/bin/env python3
"""Median single-thread latency of Interpreter.invoke() for .tflite files.

    python reference_latency.py --json models-tflite/*.tflite [-n 200] [--warmup 20]

Uses ai_edge_litert.interpreter.Interpreter(num_threads=1) (XNNPACK CPU delegate, as
LiteRT applies by default), random inputs in each input's natural range (fixed seed), and
times only invoke().  Prints {file: median_ms} (with --json: JSON only).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def make(path: str):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        shape, dt = d["shape"], np.dtype(d["dtype"])
        if dt == np.float32:
            x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
            if "dlib" in os.path.basename(path):  # embedder takes 0..255 RGB
                x = (x + 1.0) * 127.5
        else:
            x = rng.integers(np.iinfo(dt).min, np.iinfo(dt).max, size=shape, dtype=dt)
        it.set_tensor(d["index"], x)
    return it


def bench_interleaved(paths, n: int, warmup: int) -> dict:
    """Each iteration invokes every model once, in turn, as a pipeline does; each model's
    weights are then no longer hot in the CPU caches when its turn comes again."""
    its = [make(p) for p in paths]
    for _ in range(warmup):
        for it in its:
            it.invoke()
    ts = [[] for _ in its]
    for _ in range(n):
        for k, it in enumerate(its):
            t0 = time.perf_counter()
            it.invoke()
            ts[k].append(time.perf_counter() - t0)
    return {os.path.basename(p): round(float(np.median(t) * 1000.0), 4) for p, t in zip(paths, ts)}


def bench(path: str, n: int, warmup: int) -> float:
    it = make(path)
    for _ in range(warmup):
        it.invoke()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        it.invoke()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1000.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("-n", "--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--interleave", action="store_true",
                    help="invoke the models in turn each iteration (as a pipeline does)")
    args = ap.parse_args()
    if args.interleave:
        print(json.dumps(bench_interleaved(args.files, args.runs, args.warmup), indent=1))
        return
    res = {}
    for f in sorted(args.files):
        res[os.path.basename(f)] = round(bench(f, args.runs, args.warmup), 4)
        if not args.json:
            print(f"{os.path.basename(f)}: {res[os.path.basename(f)]:.3f} ms", file=sys.stderr)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
