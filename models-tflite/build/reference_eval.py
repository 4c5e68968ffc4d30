#!/usr/bin/env python3
"""Reference LFW dev-pairs evaluation of facegate's embedders (the figures the Rust pipeline
must reproduce).

    python reference_eval.py [--models DIR] [--data /work/shared/data] [--out summary.json]

Pipeline per image (facecommon.py): BlazeFace short range (float) -> face nearest the image
centre -> least-squares similarity fit of right eye, left eye, mouth centre to dlib's mean
face at (p + pad) / (1 + 2 pad) * 150 -> 150x150 bilinear chip (RGB 0..255) -> embedder ->
L2 normalise.  With "flip", the embedding of the horizontally mirrored chip is added before
normalising.  Score = cosine.  The threshold is the one with the best accuracy on
pairsDevTrain (midpoint between neighbouring scores); it is then applied to pairsDevTest.
10-fold: pairsDevTest split into 10 folds (every 10th pair, interleaved), threshold picked
on 9 folds, accuracy on the 10th, mean +- std.  Pairs whose image is missing or has no face
count as failures (wrong answer).

Mask classifier (--skip-mask to leave out): every image of mask/real (test set, never
used for calibration) and mask/synthetic (100 per class of it were calibration data):
central BlazeFace face, square crop of 1.3 x the box's longer side, 224x224, x/127.5-1;
"mask" when p[mask] > p[without_mask].  Images without a detected face are classified from
the whole image resized to 224x224 and counted in no_face.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import facecommon as fc  # noqa: E402


class Embedder:
    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter
        self.it = Interpreter(model_path=path, num_threads=1)
        self.it.allocate_tensors()
        self.i = self.it.get_input_details()[0]["index"]
        self.o = self.it.get_output_details()[0]["index"]

    def __call__(self, chip):
        self.it.set_tensor(self.i, chip[None].astype(np.float32))
        self.it.invoke()
        return self.it.get_tensor(self.o)[0].astype(np.float64)


def best_threshold(scores, same):
    """Threshold maximising accuracy of (score >= t) == same. Returns (t, acc)."""
    s = np.asarray(scores, np.float64)
    order = np.sort(np.unique(s))
    cands = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    best_t, best_a = None, -1.0
    for t in cands:
        a = float(((s >= t) == same).mean())
        if a > best_a:
            best_t, best_a = float(t), a
    return best_t, best_a


def evaluate(scores_tr, same_tr, scores_te, same_te):
    """scores: NaN for failed pairs (always counted wrong)."""
    def acc(s, y, t):
        ok = ~np.isnan(s)
        return float((((s >= t) == y) & ok).sum() / len(s))

    def far_frr(s, y, t):
        ok = ~np.isnan(s)
        g, i = y, ~y
        frr = float(((~(s >= t) | ~ok) & g).sum() / g.sum())
        far = float(((s >= t) & ok & i).sum() / i.sum())
        return far, frr
    ok_tr = ~np.isnan(scores_tr)
    t, _ = best_threshold(scores_tr[ok_tr], same_tr[ok_tr])
    far, frr = far_frr(scores_te, same_te, t)
    folds = []
    n = len(scores_te)
    fold_id = np.arange(n) % 10
    for k in range(10):
        tr, te = fold_id != k, fold_id == k
        okk = tr & ~np.isnan(scores_te)
        tk, _ = best_threshold(scores_te[okk], same_te[okk])
        folds.append(acc(scores_te[te], same_te[te], tk))
    okte = ~np.isnan(scores_te)
    g = scores_te[okte & same_te]
    im = scores_te[okte & ~same_te]
    return {
        "threshold_from_devtrain": round(t, 5),
        "devtrain_accuracy": round(acc(scores_tr, same_tr, t), 5),
        "devtest_accuracy": round(acc(scores_te, same_te, t), 5),
        "devtest_far": round(far, 5), "devtest_frr": round(frr, 5),
        "devtest_10fold_mean": round(float(np.mean(folds)), 5),
        "devtest_10fold_std": round(float(np.std(folds)), 5),
        "devtest_genuine_cos_mean": round(float(g.mean()), 4),
        "devtest_genuine_cos_std": round(float(g.std()), 4),
        "devtest_impostor_cos_mean": round(float(im.mean()), 4),
        "devtest_impostor_cos_std": round(float(im.std()), 4),
        "devtest_best_threshold_oracle": round(best_threshold(scores_te[okte], same_te[okte])[0], 5),
    }


def mask_eval(models: str, data: str, det) -> dict:
    from ai_edge_litert.interpreter import Interpreter
    nets = {}
    for k in ("float", "int8"):
        it = Interpreter(model_path=os.path.join(models, f"mask_mobilenetv2_{k}.tflite"),
                         num_threads=1)
        it.allocate_tensors()
        nets[k] = it
    out = {}
    for subset in ("real", "synthetic"):
        res = {k: {} for k in nets}
        no_face = 0
        for cls in ("with_mask", "without_mask"):
            folder = os.path.join(data, "mask", subset, cls)
            files = sorted(os.listdir(folder))
            correct = {k: 0 for k in nets}
            for f in files:
                img = fc.load_rgb(os.path.join(folder, f))
                d = fc.central_face(det.detect(img), img.shape[1], img.shape[0])
                if d is None:
                    no_face += 1
                    h, w = img.shape[:2]
                    crop = fc.warp_affine(img, np.array([[fc.MASK_SIZE / w, 0, 0],
                                                         [0, fc.MASK_SIZE / h, 0]]),
                                          fc.MASK_SIZE, fc.MASK_SIZE)
                else:
                    crop = fc.mask_crop(img, d)
                x = (crop / np.float32(127.5) - np.float32(1.0))[None].astype(np.float32)
                for k, it in nets.items():
                    it.set_tensor(it.get_input_details()[0]["index"], x)
                    it.invoke()
                    p = it.get_tensor(it.get_output_details()[0]["index"])[0]
                    correct[k] += int((p[0] > p[1]) == (cls == "with_mask"))
            for k in nets:
                res[k][cls] = round(correct[k] / len(files), 4)
                res[k].setdefault("n", 0)
                res[k]["n"] += len(files)
        for k in nets:
            res[k]["balanced_accuracy"] = round((res[k]["with_mask"] + res[k]["without_mask"]) / 2, 4)
        out[subset] = {"no_face": no_face, **res}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-lfw", action="store_true")
    ap.add_argument("--skip-mask", action="store_true")
    ap.add_argument("--models", default=os.path.dirname(HERE))
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--pads", default="0.20,0.25")
    ap.add_argument("--out", default=None, help="also write the JSON summary here")
    args = ap.parse_args()
    pads = [float(p) for p in args.pads.split(",")]

    root = os.path.join(args.data, "lfw-dev", "images")
    pairs = {s: fc.read_pairs(os.path.join(args.data, "lfw-dev", f"pairs{s}.txt"))
             for s in ("DevTrain", "DevTest")}
    images = sorted({p for ps in pairs.values() for a, b, _ in ps for p in (a, b)})
    det = fc.BlazeFace(os.path.join(args.models, "face_detection_short_range.tflite"))
    embedders = {k: Embedder(os.path.join(args.models, f"dlib_face_recognition_{k}.tflite"))
                 for k in ("float", "int8")}
    dyn = os.path.join(HERE, "work", "dlib_face_recognition_dynamic_int8.tflite")
    if os.path.exists(dyn):
        embedders["dynamic_int8"] = Embedder(dyn)

    summary = {}
    if not args.skip_mask:
        summary["mask"] = mask_eval(args.models, args.data, det)
    if args.skip_lfw:
        print(json.dumps(summary, indent=1))
        if args.out:
            with open(args.out, "w") as f:
                f.write(json.dumps(summary, indent=1) + "\n")
        return
    # emb[(model, pad, flip)][image] = unit vector ; None = failure
    emb = {}
    missing, noface = [], []
    for n, rel in enumerate(images):
        path = os.path.join(root, rel)
        if not os.path.exists(path):
            missing.append(rel)
            continue
        img = fc.load_rgb(path)
        d = fc.central_face(det.detect(img), img.shape[1], img.shape[0])
        if d is None:
            noface.append(rel)
            continue
        for pad in pads:
            chip = fc.align_chip(img, d, pad)
            flipped = chip[:, ::-1, :].copy()
            for name, e in embedders.items():
                a = e(chip)
                b = e(flipped)
                for flip, v in ((False, a), (True, a + b)):
                    emb.setdefault((name, pad, flip), {})[rel] = v / np.linalg.norm(v)
        if n % 500 == 0:
            print(f"[eval] {n}/{len(images)} images", file=sys.stderr, flush=True)

    def scores(key, split):
        e = emb[key]
        s, y = [], []
        for a, b, same in pairs[split]:
            y.append(same)
            s.append(float(e[a] @ e[b]) if a in e and b in e else np.nan)
        return np.array(s), np.array(y, bool)

    results = {}
    for key in sorted(emb, key=lambda k: (k[0], k[1], k[2])):
        name, pad, flip = key
        str_, ytr = scores(key, "DevTrain")
        ste, yte = scores(key, "DevTest")
        r = evaluate(str_, ytr, ste, yte)
        results[f"{name}/pad{pad:.2f}/{'flip' if flip else 'noflip'}"] = r
    failed = {s: sum(1 for a, b, _ in ps if a in missing + noface or b in missing + noface)
              for s, ps in pairs.items()}
    summary = {
        **summary,
        "pipeline": "BlazeFace short range float, central face, 3-point LSQ similarity to "
                    "dlib mean face, 150x150 bilinear chip, cosine of L2-normalised embeddings",
        "images": len(images), "missing_images": missing, "no_face_images": noface,
        "failed_pairs": failed,
        "pairs": {s: len(p) for s, p in pairs.items()},
        "results": results,
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
