"""Synthetic face masks drawn onto photos along BlazeFace's keypoints (training data for
facegate's mask classifier; see train_mask.py).

A mask is a textured patch in a face-aligned frame: origin between the eyes, x along the
eye line, y towards the chin, unit = eye distance. Its outline (top edge over the nose
bridge, sides towards the ears, rounded bottom under the chin) and its texture are drawn at
random from a seeded `numpy.random.Generator`, so a seed gives the same picture every time.

Textures: the four mask photos shipped in the insightface 2.1 sdist
(insightface/data/images/mask_{black,blue,green,white}.jpg, MIT-licensed package) and
procedural ones: solid cloth with fabric noise, pleats, stripes, checks, dots, blotchy
prints, N95-style cups with a centre seam. Shading (side fall-off, directional light,
brightness matched to the face) and optional ear loops are added; blur and JPEG noise are
the caller's business.
"""
from __future__ import annotations

import colorsys
import io

import numpy as np
from PIL import Image

TEX_H, TEX_W = 64, 128

# Common mask colours (RGB 0..255); half of the solid masks use one of these.
PALETTE = np.array([
    [235, 238, 240], [210, 225, 240], [150, 195, 230], [110, 170, 215], [30, 30, 32],
    [60, 60, 65], [120, 120, 125], [190, 190, 192], [35, 45, 90], [230, 180, 195],
    [140, 190, 160], [90, 120, 90], [200, 170, 140], [160, 40, 50], [240, 240, 230],
], dtype=np.float32)


def load_textures(paths: list[str]) -> list[np.ndarray]:
    """The photo textures, trimmed of their outer 6% (edges/background), as float32."""
    out = []
    for p in paths:
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float32)
        h, w = a.shape[:2]
        dy, dx = int(h * 0.06), int(w * 0.06)
        a = a[dy:h - dy, dx:w - dx]
        out.append(np.asarray(Image.fromarray(a.astype(np.uint8)).resize((TEX_W, TEX_H),
                                                                         Image.BILINEAR),
                              dtype=np.float32))
    return out


def _random_color(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        c = PALETTE[rng.integers(len(PALETTE))].copy()
        return np.clip(c + rng.normal(0, 8, 3), 0, 255)
    h, s, v = rng.random(), rng.uniform(0, 0.9), rng.uniform(0.1, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255


def _smooth_noise(rng, h, w, cells):
    small = rng.random((cells, max(2, cells * w // h))).astype(np.float32)
    im = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(im, dtype=np.float32) / 255.0


def procedural_texture(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    h, w = TEX_H, TEX_W
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.choice(["solid", "pleats", "stripes", "checks", "dots", "blotches", "n95"],
                      p=[0.25, 0.2, 0.1, 0.08, 0.1, 0.17, 0.1])
    c1 = _random_color(rng)
    c2 = _random_color(rng)
    tex = np.broadcast_to(c1, (h, w, 3)).copy()
    if kind == "pleats":
        for k in range(rng.integers(2, 5)):
            y0 = h * (0.2 + 0.6 * (k + rng.uniform(0.2, 0.8)) / 4)
            band = np.exp(-((yy - y0) / rng.uniform(0.8, 2.0)) ** 2)
            tex *= (1 - 0.25 * band)[..., None]
    elif kind == "stripes":
        period = rng.uniform(6, 24)
        ang = rng.uniform(0, np.pi)
        t = (xx * np.cos(ang) + yy * np.sin(ang)) / period
        sel = (np.mod(t, 1.0) < rng.uniform(0.3, 0.7))
        tex[sel] = c2
    elif kind == "checks":
        p = rng.uniform(5, 16)
        sel = (np.floor(xx / p) + np.floor(yy / p)) % 2 == 1
        tex[sel] = c2
    elif kind == "dots":
        p = rng.uniform(7, 18)
        r = p * rng.uniform(0.15, 0.35)
        dx = np.mod(xx + (np.floor(yy / p) % 2) * p / 2, p) - p / 2
        dy = np.mod(yy, p) - p / 2
        tex[dx ** 2 + dy ** 2 < r ** 2] = c2
    elif kind == "blotches":
        n = _smooth_noise(rng, h, w, int(rng.integers(3, 10)))
        c3 = _random_color(rng)
        tex[n > 0.55] = c2
        tex[n > 0.75] = c3
    elif kind == "n95":
        tex = np.broadcast_to(PALETTE[rng.choice([0, 4, 6, 7, 14])], (h, w, 3)).copy()
        seam = np.exp(-((xx - w / 2) / 1.2) ** 2)
        tex *= (1 - 0.2 * seam)[..., None]
    # fabric grain
    grain = rng.normal(0, rng.uniform(2, 10), (h, w, 1)).astype(np.float32)
    tex = tex + grain
    return np.clip(tex, 0, 255), str(kind)


def _local_frame(kp: np.ndarray):
    re, le = kp[0], kp[1]
    ec = (re + le) / 2.0
    ex = le - re
    d = float(np.linalg.norm(ex))
    ex = ex / max(d, 1e-6)
    ey = np.array([-ex[1], ex[0]])
    return ec, ex, ey, max(d, 1e-6)


def draw_mask(img: np.ndarray, kp: np.ndarray, rng: np.random.Generator,
              photo_textures: list[np.ndarray]) -> tuple[np.ndarray, dict]:
    """Returns a copy of `img` (HxWx3 uint8) with a mask drawn on the face whose six
    BlazeFace keypoints (image pixels) are `kp`, and a description of what was drawn."""
    ec, ex, ey, d = _local_frame(kp)
    loc = lambda p: np.array([(p - ec) @ ex, (p - ec) @ ey]) / d  # noqa: E731
    nose, mouth, rear, lear = loc(kp[2]), loc(kp[3]), loc(kp[4]), loc(kp[5])
    if rng.random() < 0.3 and photo_textures:
        tex = photo_textures[int(rng.integers(len(photo_textures)))].copy()
        kind = "photo"
        if rng.random() < 0.3:  # recolour a photo mask: keep its luminance structure
            lum = tex.mean(2, keepdims=True) / 255.0
            tex = np.clip(lum * _random_color(rng) * 1.2, 0, 255)
    else:
        tex, kind = procedural_texture(rng)
    shape = "cup" if kind == "n95" or rng.random() < 0.1 else "cloth"
    # outline in the local frame
    cx = nose[0] * rng.uniform(0.3, 0.8)
    xl = rear[0] * rng.uniform(0.75, 1.0) if rear[0] < -0.3 else -rng.uniform(0.8, 1.0)
    xr = lear[0] * rng.uniform(0.75, 1.0) if lear[0] > 0.3 else rng.uniform(0.8, 1.0)
    top_c = nose[1] * rng.uniform(0.3, 0.8)
    top_side = top_c + rng.uniform(0.1, 0.45)
    chin = mouth[1] + rng.uniform(0.5, 0.8)
    bot_c = chin + rng.uniform(-0.05, 0.2)
    bot_side = bot_c - (rng.uniform(0.4, 0.8) if shape == "cup" else rng.uniform(0.2, 0.6))
    half = max((xr - xl) / 2.0, 0.3)
    mid = (xl + xr) / 2.0

    # pixel region
    corners = [ec + d * (x * ex + y * ey) for x in (xl - 0.2, xr + 0.2)
               for y in (top_c - 0.2, bot_c + 0.2)]
    corners = np.array(corners)
    H, W = img.shape[:2]
    x0 = int(max(0, np.floor(corners[:, 0].min())))
    x1 = int(min(W, np.ceil(corners[:, 0].max()) + 1))
    y0 = int(max(0, np.floor(corners[:, 1].min())))
    y1 = int(min(H, np.ceil(corners[:, 1].max()) + 1))
    out = img.astype(np.float32).copy()
    if x1 <= x0 or y1 <= y0:
        return img.copy(), {"kind": kind, "drawn": False}
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    rx, ry = px + 0.5 - ec[0], py + 0.5 - ec[1]
    lx = (rx * ex[0] + ry * ex[1]) / d
    ly = (rx * ey[0] + ry * ey[1]) / d
    t = np.clip((lx - mid) / half, -1.5, 1.5)
    if shape == "cup":
        top = top_c + (top_side - top_c) * t ** 2
        bot = bot_c + (bot_side - bot_c) * np.abs(t) ** 1.5
    else:
        top = top_c + (top_side - top_c) * np.abs(t) ** 1.2
        bot = bot_c + (bot_side - bot_c) * t ** 4
    u = (lx - xl) / (xr - xl)
    v = (ly - top) / np.maximum(bot - top, 1e-3)
    feather = 1.2 / d  # ~1 px of anti-aliasing
    a_u = np.clip(np.minimum(lx - xl, xr - lx) / feather, 0, 1)
    a_v = np.clip(np.minimum(ly - top, bot - ly) / feather, 0, 1)
    alpha = a_u * a_v
    # texture lookup (cylindrical-ish: compress towards the sides)
    ut = np.clip(0.5 + np.arcsin(np.clip(2 * u - 1, -1, 1)) / np.pi, 0, 1)
    ti = np.clip((v * (TEX_H - 1)).astype(np.int32), 0, TEX_H - 1)
    tj = np.clip((ut * (TEX_W - 1)).astype(np.int32), 0, TEX_W - 1)
    col = tex[ti, tj]
    # shading: side fall-off, directional light, brightness of the face
    fall = 1 - rng.uniform(0.05, 0.35) * np.clip(np.abs(2 * u - 1), 0, 1) ** 2
    light = 1 + rng.uniform(-0.25, 0.25) * (2 * u - 1) + rng.uniform(-0.15, 0.1) * (2 * v - 1)
    face_region = out[y0:y1, x0:x1][alpha > 0.5]
    face_lum = float(face_region.mean()) if face_region.size else 128.0
    gain = (1 - rng.uniform(0.2, 0.6)) + rng.uniform(0.2, 0.6) * np.clip(face_lum / 140.0,
                                                                          0.4, 1.4)
    col = col * (fall * light * gain)[..., None]
    if shape == "cup" and rng.random() < 0.7:  # centre seam of a cup mask
        col *= (1 - 0.25 * np.exp(-((lx - mid) * d / 1.0) ** 2))[..., None]
    patch = out[y0:y1, x0:x1]
    patch[:] = patch * (1 - alpha[..., None]) + np.clip(col, 0, 255) * alpha[..., None]
    info = {"kind": kind, "shape": shape, "drawn": True}
    if rng.random() < 0.5:  # ear loops
        lc = np.array([250, 250, 250]) if rng.random() < 0.6 else tex.mean((0, 1))
        width = max(0.6, d * rng.uniform(0.02, 0.05))
        for side, ear in ((xl, rear), (xr, lear)):
            for yy in (top_side + 0.05, bot_side - 0.1):
                p0 = ec + d * (side * ex + yy * ey)
                e = ear if abs(ear[0]) > 0.3 else np.array([np.sign(side) * 1.1, 0.3])
                p1 = ec + d * ((e[0] * 1.02) * ex + (e[1] + rng.uniform(-0.2, 0.2)) * ey)
                _line(out, p0, p1, width, lc)
        info["loops"] = True
    return np.clip(out, 0, 255).astype(np.uint8), info


def _line(img, p0, p1, width, color):
    H, W = img.shape[:2]
    x0 = int(max(0, np.floor(min(p0[0], p1[0]) - width - 1)))
    x1 = int(min(W, np.ceil(max(p0[0], p1[0]) + width + 2)))
    y0 = int(max(0, np.floor(min(p0[1], p1[1]) - width - 1)))
    y1 = int(min(H, np.ceil(max(p0[1], p1[1]) + width + 2)))
    if x1 <= x0 or y1 <= y0:
        return
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    dvec = p1 - p0
    L2 = float(dvec @ dvec) or 1.0
    t = np.clip(((px - p0[0]) * dvec[0] + (py - p0[1]) * dvec[1]) / L2, 0, 1)
    dist = np.hypot(px - (p0[0] + t * dvec[0]), py - (p0[1] + t * dvec[1]))
    a = np.clip(width / 2 + 0.5 - dist, 0, 1)[..., None]
    patch = img[y0:y1, x0:x1]
    patch[:] = patch * (1 - a) + np.asarray(color, np.float32) * a


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photo noise: optional down/up-scaling blur and JPEG re-encoding (quality 30-95)."""
    im = Image.fromarray(img)
    if rng.random() < 0.3:
        w, h = im.size
        f = rng.uniform(0.4, 0.8)
        im = im.resize((max(8, int(w * f)), max(8, int(h * f))), Image.BILINEAR).resize(
            (w, h), Image.BILINEAR)
    if rng.random() < 0.7:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(30, 96)))
        buf.seek(0)
        im = Image.open(buf).convert("RGB")
    return np.asarray(im, dtype=np.uint8)
