#!/usr/bin/env python3
"""Detection of masked faces that fill the frame, with and without zooming out (dev data only).

Every 25th lfw-dev image gets a drawn mask; the face is cut to its detector box (margin 0) or 1.15x
it, and BlazeFace short range runs on that crop shrunk into a black border of zoom x its side.
Prints the fraction detected per zoom (1.0, 1.2, 1.4, 1.6, 2.0, 2.5). Result on 2026-11-25 (200 faces):
tight unmasked [0.99, 1.0, 1.0, 1.0, 1.0, 1.0]; tight masked [0.675, 0.895, 0.96, 0.975, 0.98, 0.96];
1.15x masked [0.875, 0.955, 0.99, 0.99, 0.985, 0.97] -> ZOOM_OUT_RETRY = 1.6 (src/vision/detect.rs).
"""
import glob
import os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import facecommon as fc, mask_synth as ms, train_mask as tm
det = fc.BlazeFace(os.path.join(tm.OUT_DIR, "face_detection_short_range.tflite"))
tex = ms.load_textures(sorted(glob.glob(os.path.join(tm.WORK, "textures", "*.jpg"))))
files = sorted(glob.glob('/work/shared/data/lfw-dev/images/*/*.jpg'))[::25]
rng = np.random.default_rng(5)
zooms = [1.0, 1.2, 1.4, 1.6, 2.0, 2.5]
res = {(t, z): 0 for t in ('tight', 'tight_masked', 'm13_masked') for z in zooms}
n = 0
for f in files:
    img = fc.load_rgb(f)
    d = fc.central_face(det.detect(img), 150, 150)
    if d is None: continue
    m, _ = ms.draw_mask(img, d.keypoints, rng, tex)
    n += 1
    for tag, src, mg in (('tight', img, 0.0), ('tight_masked', m, 0.0), ('m13_masked', m, 0.15)):
        crop = tm.pipeline_crop(src, d.box, mg, 160)
        for z in zooms:
            side = int(160 * z); o = (side - 160) // 2
            big = np.zeros((side, side, 3), np.uint8); big[o:o+160, o:o+160] = crop
            res[(tag, z)] += int(len(det.detect(big)) > 0)
print(n)
for t in ('tight', 'tight_masked', 'm13_masked'):
    print(t, [round(res[(t, z)] / n, 3) for z in zooms])
