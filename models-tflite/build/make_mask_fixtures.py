#!/usr/bin/env python3
"""The mask test fixtures in tests/fixtures/mask/ (see the README there).

    python make_mask_fixtures.py [--data /work/shared/data]

From faces-small (face-api.js example images, MIT): a few faces as they are, the same
faces with a mask drawn by mask_synth.py (fixed seeds), and a masked face cut tight to its
detector box, which BlazeFace only finds with the zoom-out retry.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import facecommon as fc  # noqa: E402
import mask_synth as ms  # noqa: E402
import train_mask as tm  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "tests", "fixtures", "mask")
# (person/file, seed) for the masked copies; chosen so that the set shows a photo mask,
# a cloth print and a cup mask.
MASKED = [("leonard/leonard2.png", 3), ("bernadette/bernadette3.png", 11),
          ("raj/raj1.png", 5)]
UNMASKED = ["howard/howard1.png", "stuart/stuart2.png"]
TIGHT = [("bernadette/bernadette2.png", 1), ("leonard/leonard5.png", 1), ("stuart/stuart5.png", 4)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--cache", default=os.environ.get("FACEGATE_PKG_CACHE"))
    args = ap.parse_args()
    det = fc.BlazeFace(os.path.join(tm.OUT_DIR, "face_detection_short_range.tflite"))
    tex = ms.load_textures(tm.textures(args.cache))
    root = os.path.join(args.data, "faces-small")
    os.makedirs(OUT, exist_ok=True)
    for rel, seed in MASKED + TIGHT:
        img = fc.load_rgb(os.path.join(root, rel))
        d = fc.central_face(det.detect(img), img.shape[1], img.shape[0])
        out, info = ms.draw_mask(img, d.keypoints, np.random.default_rng(seed), tex)
        name = "masked_" + os.path.splitext(os.path.basename(rel))[0]
        if (rel, seed) in TIGHT:
            # cut to the detector box: the face fills the frame
            out = tm.pipeline_crop(out, d.box, 0.0, 128)
            name = "masked_tight_" + os.path.splitext(os.path.basename(rel))[0]
            found = det.detect(out)
            print(name, "found without zoom-out:", bool(found),
                  "with:", tm.detect(det, out) is not None)
        Image.fromarray(out).save(os.path.join(OUT, name + ".jpg"), quality=92)
        print(name, info)
    for rel in UNMASKED:
        shutil.copyfile(os.path.join(root, rel), os.path.join(OUT, os.path.basename(rel)))


if __name__ == "__main__":
    main()
