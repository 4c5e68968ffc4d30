#!/usr/bin/env python3
"""Median single-thread latency of Interpreter.invoke() for .tflite files.

    python reference_latency.py --json models-tflite/*.tflite [-n 200] [--warmup 20]
    python reference_latency.py --json --pipeline IMAGE --face X,Y,W,H DETECTOR MASK EMBEDDER

Uses ai_edge_litert.interpreter.Interpreter(num_threads=1) (XNNPACK CPU delegate, as
LiteRT applies by default), random inputs in each input's natural range (fixed seed), and
times only invoke().  Prints {file: median_ms} (with --json: JSON only).

--interleave invokes the models in turn.  --pipeline builds facegate's pipeline on the
interpreter (Pillow for the image work): each iteration decodes IMAGE, letterboxes it
into the detector, crops the face box for the mask model and a 150x150 chip for the
embedder (run twice, the chip and its mirror), and times each invoke() where it sits in
that sequence: the model finds the caches as a pipeline leaves them (the embedder: both
invokes of the iteration summed).
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


def bench_pipeline(image: str, face, detector: str, mask: str, embedder: str, n: int,
                   warmup: int) -> dict:
    """The interpreter inside facegate's sequence of stages (see the module's doc)."""
    import io
    from PIL import Image

    jpeg = open(image, "rb").read()
    det, msk, emb = make(detector), make(mask), make(embedder)
    # Input shapes and the letterbox: the longer side scaled to the detector's input.
    side = det.get_input_details()[0]["shape"][1]
    mside = msk.get_input_details()[0]["shape"][1]
    x, y, w, h = face
    margin = 1.3  # facegate's default mask margin (0.3)
    ms = max(w, h) * margin
    mask_box = (x + w / 2 - ms / 2, y + h / 2 - ms / 2, x + w / 2 + ms / 2, y + h / 2 + ms / 2)
    cs = max(w, h) * 1.5  # the chip covers the face with dlib's 0.25 padding each side
    chip_box = (x + w / 2 - cs / 2, y + h / 2 - cs / 2, x + w / 2 + cs / 2, y + h / 2 + cs / 2)
    io_of = lambda it: (it.get_input_details()[0]["index"], it.get_output_details())
    (di, dout), (mi, mout), (ei, eout) = io_of(det), io_of(msk), io_of(emb)
    times = {"det": [], "mask": [], "emb": []}

    def timed(it, key, record):
        t0 = time.perf_counter()
        it.invoke()
        dt = time.perf_counter() - t0
        if record:
            times[key].append(dt)
        return dt

    for i in range(warmup + n):
        record = i >= warmup
        frame = Image.open(io.BytesIO(jpeg)).convert("RGB")
        factor = max(1, max(frame.size) // side)
        small = frame.reduce(factor) if factor > 1 else frame
        scale = side / max(small.size)
        small = small.resize((round(small.size[0] * scale), round(small.size[1] * scale)),
                             Image.BILINEAR)
        box = Image.new("RGB", (side, side))
        box.paste(small, ((side - small.size[0]) // 2, (side - small.size[1]) // 2))
        det.set_tensor(di, (np.asarray(box, np.float32) / 127.5 - 1.0)[None])
        timed(det, "det", record)
        for d in dout:
            det.get_tensor(d["index"])
        chip = frame.resize((150, 150), Image.BILINEAR, box=chip_box)
        crop = frame.resize((mside, mside), Image.BILINEAR, box=mask_box)
        msk.set_tensor(mi, (np.asarray(crop, np.float32) / 127.5 - 1.0)[None])
        timed(msk, "mask", record)
        msk.get_tensor(mout[0]["index"])
        pixels = np.asarray(chip, np.float32)[None]
        emb.set_tensor(ei, pixels)
        first = timed(emb, "emb", False)
        emb.get_tensor(eout[0]["index"])
        emb.set_tensor(ei, np.ascontiguousarray(pixels[:, :, ::-1]))
        second = timed(emb, "emb", False)
        emb.get_tensor(eout[0]["index"])
        if record:
            times["emb"].append(first + second)
    med = lambda t: round(float(np.median(t) * 1000.0), 4)
    return {os.path.basename(detector): med(times["det"]), os.path.basename(mask): med(times["mask"]),
            os.path.basename(embedder): med(times["emb"])}


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
    ap.add_argument("--pipeline", metavar="IMAGE",
                    help="time each invoke inside facegate's sequence of stages on IMAGE; "
                         "files: detector, mask model, embedder")
    ap.add_argument("--face", help="X,Y,W,H: the face box the pipeline crops (with --pipeline)")
    args = ap.parse_args()
    if args.pipeline:
        if len(args.files) != 3 or not args.face:
            ap.error("--pipeline takes --face X,Y,W,H and three files: detector, mask, embedder")
        face = [float(v) for v in args.face.split(",")]
        print(json.dumps(bench_pipeline(args.pipeline, face, *args.files, args.runs, args.warmup),
                         indent=1))
        return
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
