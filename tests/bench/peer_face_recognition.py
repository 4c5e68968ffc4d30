#!/usr/bin/env python3
"""identify-face over HTTP (facegate, one client) next to the peer face_recognition
(dlib) doing the same job on the same single-face 640x480 JPEG, interleaved in one run.

The same job on both sides, from the JPEG bytes in memory to the best match among the
enrolled people, for the LARGEST face only (the API's rule): facegate gets the bytes
base64-encoded in the JSON body (decode, detect, align, mask, embed, 1:N search, LMDB
read, HTTP; timed twice: a new connection per call through urllib, and one kept-alive
connection as a kiosk client that stays connected to its local daemon has);
face_recognition decodes them (PIL), detects every face (HOG, its
default), encodes the largest one only (its default "small" landmarks, 1 jitter) and
takes the nearest of the known encodings. The calls alternate (facegate, peer,
facegate, ...) so both see the same machine load.

    python tests/bench/peer_face_recognition.py --url http://127.0.0.1:18431 \
        --token TOKEN --gallery bench --image tests/fixtures/vision/single_640x480.jpg \
        --known tests/fixtures/api/amy1.png ...
(run by tests/bench/peer.sh, which starts the daemon and enrolls the same pictures)
"""
import argparse
import base64
import io
import json
import statistics
import time
import urllib.request

import face_recognition
import numpy as np
from PIL import Image

from benchlib import KeptIdentify


def facegate_identify(url, token, gallery, jpeg):
    body = json.dumps({
        "facegallery_id": gallery,
        "image": base64.b64encode(jpeg).decode(),
        "trx_id": "peer-bench",
    }).encode()
    req = urllib.request.Request(
        f"{url}/face-api/facegallery/identify-face", data=body, method="POST",
        headers={"Accesstoken": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)["risetai"]


def largest(locations):
    # (top, right, bottom, left)
    return max(locations, key=lambda l: (l[2] - l[0]) * (l[1] - l[3]))


def peer_identify(jpeg, known):
    image = np.array(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    locations = face_recognition.face_locations(image)
    if not locations:
        return None
    encoding = face_recognition.face_encodings(image, [largest(locations)])[0]
    distances = face_recognition.face_distance(known, encoding)
    best = int(np.argmin(distances))
    return best if distances[best] <= 0.6 else None


def timed_ms(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--gallery", default="bench")
    ap.add_argument("--image", required=True)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--known", nargs="+", required=True,
                    help="the pictures enrolled in the gallery, the probe's own first")
    args = ap.parse_args()
    jpeg = open(args.image, "rb").read()
    w, h = Image.open(io.BytesIO(jpeg)).size

    first = facegate_identify(args.url, args.token, args.gallery, jpeg)
    known = []
    for path in args.known:
        picture = face_recognition.load_image_file(path)
        locations = face_recognition.face_locations(picture)
        known.append(face_recognition.face_encodings(picture, [largest(locations)])[0])
    peer_first = peer_identify(jpeg, known)
    kept = KeptIdentify(args.url, args.token, args.gallery, trx_id="peer-bench")
    for _ in range(3):  # warm-up all
        facegate_identify(args.url, args.token, args.gallery, jpeg)
        kept.identify(jpeg)
        peer_identify(jpeg, known)

    fg_times, kept_times, peer_times = [], [], []
    for _ in range(args.runs):  # interleaved: every side under the same load
        fg_times.append(timed_ms(lambda: facegate_identify(args.url, args.token, args.gallery, jpeg)))
        kept_times.append(timed_ms(lambda: kept.identify(jpeg)))
        peer_times.append(timed_ms(lambda: peer_identify(jpeg, known)))
    fg, peer = statistics.median(fg_times), statistics.median(peer_times)
    fg_kept = statistics.median(kept_times)
    matched = first.get("return") or [{}]
    print(f"image {args.image} {w}x{h}, {args.runs} interleaved runs each, one client, "
          f"{len(known)} people enrolled")
    print(f"facegate identify-face over HTTP, a new connection per call (urllib): "
          f"median {fg:.1f} ms (status {first['status']}, user {matched[0].get('user_id', '-')})")
    print(f"facegate identify-face over HTTP, one kept-alive connection: median {fg_kept:.1f} ms")
    print(f"face_recognition decode+HOG+encode largest+nearest: median {peer:.1f} ms "
          f"(match: known #{peer_first})")
    print(f"RESULT facegate_ms={fg:.1f} facegate_kept_alive_ms={fg_kept:.1f} peer_ms={peer:.1f} "
          f"ratio_peer_over_facegate={peer / fg:.2f} "
          f"ratio_peer_over_facegate_kept_alive={peer / fg_kept:.2f}")


if __name__ == "__main__":
    main()
