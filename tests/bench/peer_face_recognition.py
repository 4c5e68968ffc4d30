#!/usr/bin/env python3
"""identify-face over HTTP (facegate, one client) next to the peer face_recognition
(dlib) doing detect + encode + compare on the same 640x480 JPEG, in the same run.

Both sides start from the JPEG bytes in memory: facegate gets them base64-encoded in
the JSON body (decode, detect, align, mask, embed, 1:N search, LMDB read, HTTP);
face_recognition decodes them (PIL), detects (HOG, its default), encodes (its default
"small" landmarks, 1 jitter) and compares with a known encoding.

    python tests/bench/peer_face_recognition.py --url http://127.0.0.1:18431 \
        --token TOKEN --gallery bench --image tests/fixtures/vision/group_640x480.jpg
(run by tests/bench/peer.sh, which starts the daemon)
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


def peer_identify(jpeg, known):
    image = np.array(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    locations = face_recognition.face_locations(image)
    encodings = face_recognition.face_encodings(image, locations)
    if not encodings:
        return None
    return face_recognition.compare_faces(known, encodings[0])


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--gallery", default="bench")
    ap.add_argument("--image", required=True)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    jpeg = open(args.image, "rb").read()
    w, h = Image.open(io.BytesIO(jpeg)).size

    first = facegate_identify(args.url, args.token, args.gallery, jpeg)
    known_image = np.array(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    known = face_recognition.face_encodings(known_image)[:1]
    peer_first = peer_identify(jpeg, known)
    for _ in range(3):  # warm-up both
        facegate_identify(args.url, args.token, args.gallery, jpeg)
        peer_identify(jpeg, known)

    fg, _ = median_ms(lambda: facegate_identify(args.url, args.token, args.gallery, jpeg), args.runs)
    peer, _ = median_ms(lambda: peer_identify(jpeg, known), args.runs)
    print(f"image {args.image} {w}x{h}, {args.runs} runs each, one client")
    print(f"facegate identify-face over HTTP: median {fg:.1f} ms "
          f"(status {first['status']}, user {first.get('return', [{}])[0].get('user_id') if first.get('return') else '-'})")
    print(f"face_recognition detect+encode+compare: median {peer:.1f} ms (match {peer_first})")
    print(f"RESULT facegate_ms={fg:.1f} peer_ms={peer:.1f} ratio_peer_over_facegate={peer / fg:.2f}")


if __name__ == "__main__":
    main()
