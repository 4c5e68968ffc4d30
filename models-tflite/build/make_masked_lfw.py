#!/usr/bin/env python3
"""Masked copies of the LFW development images, for verifying masked probes against
unmasked enrollments (`facegate eval lfw --probe-images DIR`).

    python make_masked_lfw.py [--data /work/shared/data] [--out /work/cache/lfw-masked]

Every lfw-dev image gets a mask drawn along its BlazeFace keypoints (central face) by
mask_synth.py, seeded by its file name (seed tag "probe", so not the training masks),
saved as JPEG quality 95 under the same relative path. Not committed (LFW terms).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import facecommon as fc  # noqa: E402
import mask_synth as ms  # noqa: E402
import train_mask as tm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--out", default="/work/cache/lfw-masked")
    ap.add_argument("--cache", default=os.environ.get("FACEGATE_PKG_CACHE"))
    args = ap.parse_args()
    det = fc.BlazeFace(os.path.join(tm.OUT_DIR, "face_detection_short_range.tflite"))
    tex = ms.load_textures(tm.textures(args.cache))
    root = os.path.join(args.data, "lfw-dev", "images")
    files = sorted(glob.glob(os.path.join(root, "*", "*.jpg")))
    no_face = 0
    for i, p in enumerate(files):
        rel = os.path.relpath(p, root)
        img = fc.load_rgb(p)
        d = tm.detect(det, img)
        dst = os.path.join(args.out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if d is None:
            no_face += 1
            continue
        rng = np.random.default_rng([tm.SEED, zlib.crc32(b"probe"), zlib.crc32(rel.encode())])
        out, _ = ms.draw_mask(img, d.keypoints, rng, tex)
        Image.fromarray(out).save(dst, quality=95)
        if i % 1000 == 0:
            print(f"{i}/{len(files)}", flush=True)
    print(f"{len(files) - no_face} masked copies in {args.out}; {no_face} without a face "
          "(left out: they count as failed pairs)")


if __name__ == "__main__":
    main()
