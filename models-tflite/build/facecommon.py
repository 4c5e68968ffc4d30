"""Shared reference pre-processing for facegate's models.

Everything here is plain numpy so that the Rust pipeline can reproduce it exactly:

* images are decoded to RGB uint8 (PIL), then handled as float32;
* all geometric resampling goes through `warp_affine`: for every output pixel centre
  (u + 0.5, v + 0.5) the source point is M^-1 (u + 0.5, v + 0.5) in continuous image
  coordinates (pixel i covers [i, i + 1)), sampled bilinearly at (x - 0.5, y - 0.5) in
  index coordinates; samples outside the image read 0 (black);
* BlazeFace short range: 128x128 letterbox (image scaled by 128 / max(w, h), centred,
  black borders), input x / 127.5 - 1, the standard MediaPipe 896 anchors, sigmoid score
  >= 0.5, weighted NMS (IoU 0.3) as in MediaPipe; boxes and keypoints are mapped back to
  image pixels;
* the face nearest the image centre is used;
* dlib-style chip: least-squares similarity transform of three keypoints (right eye = kp0,
  left eye = kp1, mouth centre = kp3) onto dlib's mean-face positions placed at
  (p + pad) / (1 + 2 pad) * 150, warped to 150x150;
* mask crop: square box of side 1.3 * max(box w, box h) around the detector box centre,
  clipped to the image, resized (bilinear via `warp_affine`) to 224x224.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

# dlib mean-face positions (unit coordinates) of right eye, left eye, mouth centre.
DLIB_TEMPLATE = np.array([[0.2273, 0.2214], [0.7528, 0.2212], [0.4901, 0.8075]],
                         dtype=np.float64)
CHIP_SIZE = 150
DEFAULT_PAD = 0.25
MASK_SIZE = 224
MASK_MARGIN = 1.3


def load_rgb(path: str) -> np.ndarray:
    """RGB uint8 HxWx3."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def warp_affine(img: np.ndarray, m: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Bilinear warp. `m` is the 2x3 forward map image -> output (continuous coords).

    Returns float32 HxWxC in the input's value range (0 outside the image).
    """
    a = np.vstack([m, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(a)
    u, v = np.meshgrid(np.arange(out_w, dtype=np.float64) + 0.5,
                       np.arange(out_h, dtype=np.float64) + 0.5)
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2] - 0.5
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2] - 0.5
    src = img.astype(np.float32)
    h, w = src.shape[:2]
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0).astype(np.float32)[..., None]
    fy = (y - y0).astype(np.float32)[..., None]

    def tap(yy, xx):
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        vals = src[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        return vals * ok[..., None].astype(np.float32)

    top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
    bot = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


# ----------------------------------------------------------------------------- BlazeFace
def ssd_anchors(input_size: int, strides, anchors_per_stride_layer: int = 2) -> np.ndarray:
    """MediaPipe SsdAnchorsCalculator with fixed_anchor_size, aspect ratio 1, offset 0.5.

    Consecutive layers with the same stride share one grid; each layer contributes
    2 anchors per cell (aspect ratio 1 + interpolated scale).  Returns [N, 2] centres (x, y)
    in unit coordinates; anchor w = h = 1.
    """
    out = []
    i = 0
    while i < len(strides):
        n = 0
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            n += anchors_per_stride_layer
            j += 1
        g = int(np.ceil(input_size / strides[i]))
        for yy in range(g):
            for xx in range(g):
                for _ in range(n):
                    out.append(((xx + 0.5) / g, (yy + 0.5) / g))
        i = j
    return np.array(out, dtype=np.float32)


@dataclass
class Detection:
    score: float
    box: np.ndarray        # xmin, ymin, xmax, ymax in image pixels
    keypoints: np.ndarray  # [6, 2] (x, y) in image pixels


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


class BlazeFace:
    """Short-range (128) or full-range (192) BlazeFace via ai_edge_litert."""

    def __init__(self, model_path: str, num_threads: int = 1, score_thresh: float = 0.5,
                 iou_thresh: float = 0.3):
        from ai_edge_litert.interpreter import Interpreter
        self.interp = Interpreter(model_path=model_path, num_threads=num_threads)
        self.interp.allocate_tensors()
        inp = self.interp.get_input_details()[0]
        self.size = int(inp["shape"][1])
        self.inp_index = inp["index"]
        outs = sorted(self.interp.get_output_details(), key=lambda d: -int(d["shape"][2]))
        self.reg_index, self.cls_index = outs[0]["index"], outs[1]["index"]
        if self.size == 128:
            self.anchors = ssd_anchors(128, [8, 16, 16, 16])
        else:  # full range: one stride-4 layer, 1 anchor per cell (48x48 = 2304)
            self.anchors = ssd_anchors(192, [4], anchors_per_stride_layer=1)
        self.score_thresh = score_thresh
        self.iou_thresh = iou_thresh

    def detect(self, img: np.ndarray) -> list[Detection]:
        h, w = img.shape[:2]
        s = self.size / max(w, h)
        ox = (self.size - w * s) / 2.0
        oy = (self.size - h * s) / 2.0
        m = np.array([[s, 0, ox], [0, s, oy]], dtype=np.float64)
        x = warp_affine(img, m, self.size, self.size) / np.float32(127.5) - np.float32(1.0)
        self.interp.set_tensor(self.inp_index, x[None].astype(np.float32))
        self.interp.invoke()
        reg = self.interp.get_tensor(self.reg_index)[0].astype(np.float64)
        logit = self.interp.get_tensor(self.cls_index)[0, :, 0].astype(np.float64)
        score = 1.0 / (1.0 + np.exp(-np.clip(logit, -100, 100)))
        idx = np.nonzero(score >= self.score_thresh)[0]
        if idx.size == 0:
            return []
        a = self.anchors[idx].astype(np.float64)
        r = reg[idx] / self.size
        cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
        bw, bh = r[:, 2], r[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        kps = r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
        dets = _weighted_nms(score[idx], boxes, kps, self.iou_thresh)
        out = []
        for sc, b, k in dets:  # letterbox unit coords -> image pixels
            b = b * self.size
            k = k * self.size
            b = np.array([(b[0] - ox) / s, (b[1] - oy) / s, (b[2] - ox) / s, (b[3] - oy) / s])
            k = np.stack([(k[:, 0] - ox) / s, (k[:, 1] - oy) / s], 1)
            out.append(Detection(float(sc), b, k))
        return out


def _weighted_nms(scores, boxes, kps, iou_thresh):
    """MediaPipe NonMaxSuppression WEIGHTED: cluster by IoU with the best remaining
    detection, average box and keypoints weighted by score, keep the best score."""
    order = list(np.argsort(-scores, kind="stable"))
    res = []
    while order:
        top = order[0]
        cluster, rest = [], []
        for i in order:
            (cluster if _iou(boxes[top], boxes[i]) > iou_thresh else rest).append(i)
        if top not in cluster:
            cluster.insert(0, top)
        wts = scores[cluster]
        tot = wts.sum()
        b = (boxes[cluster] * wts[:, None]).sum(0) / tot
        k = (kps[cluster] * wts[:, None, None]).sum(0) / tot
        res.append((scores[top], b, k))
        order = [i for i in rest if i != top]
    return res


def central_face(dets: list[Detection], w: int, h: int) -> Detection | None:
    if not dets:
        return None
    c = np.array([w / 2.0, h / 2.0])

    def dist(d):
        bc = np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2])
        return float(((bc - c) ** 2).sum())
    return min(dets, key=dist)


# ----------------------------------------------------------------------------- alignment
def similarity_lsq(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, translation; no reflection) src -> dst.
    Returns 2x3 forward matrix [[a, -b, tx], [b, a, ty]]."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, -y, 1, 0]); rhs.append(u)
        rows.append([y, x, 0, 1]); rhs.append(v)
    p, *_ = np.linalg.lstsq(np.array(rows, np.float64), np.array(rhs, np.float64), rcond=None)
    a, b, tx, ty = p
    return np.array([[a, -b, tx], [b, a, ty]], dtype=np.float64)


def chip_template(pad: float = DEFAULT_PAD, size: int = CHIP_SIZE) -> np.ndarray:
    return (DLIB_TEMPLATE + pad) / (1.0 + 2.0 * pad) * size


def align_chip(img: np.ndarray, det: Detection, pad: float = DEFAULT_PAD,
               size: int = CHIP_SIZE) -> np.ndarray:
    """150x150x3 float32 RGB 0..255 dlib-style chip."""
    src = det.keypoints[[0, 1, 3]]
    m = similarity_lsq(src, chip_template(pad, size))
    return warp_affine(img, m, size, size)


def mask_crop(img: np.ndarray, det: Detection, margin: float = MASK_MARGIN,
              size: int = MASK_SIZE) -> np.ndarray:
    """224x224x3 float32 RGB 0..255: square box (margin * max side) clipped to the image."""
    h, w = img.shape[:2]
    cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
    side = margin * max(det.box[2] - det.box[0], det.box[3] - det.box[1])
    x0, y0 = max(0.0, cx - side / 2), max(0.0, cy - side / 2)
    x1, y1 = min(float(w), cx + side / 2), min(float(h), cy + side / 2)
    m = np.array([[size / (x1 - x0), 0, -x0 * size / (x1 - x0)],
                  [0, size / (y1 - y0), -y0 * size / (y1 - y0)]], dtype=np.float64)
    return warp_affine(img, m, size, size)


# ----------------------------------------------------------------------------- LFW
def read_pairs(path: str):
    """Returns list of (file1, file2, same) with relative paths Name/Name_NNNN.jpg."""
    out = []
    with open(path) as f:
        lines = f.read().split("\n")[1:]
    for ln in lines:
        p = ln.split()
        if len(p) == 3:
            out.append((_lfw(p[0], p[1]), _lfw(p[0], p[2]), True))
        elif len(p) == 4:
            out.append((_lfw(p[0], p[1]), _lfw(p[2], p[3]), False))
    return out


def _lfw(name, i):
    return os.path.join(name, "%s_%04d.jpg" % (name, int(i)))
