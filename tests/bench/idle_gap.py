#!/usr/bin/env python3
"""identify-face over one kept-alive connection, back to back and after an idle spell.

A kiosk's requests come one at a time with the machine idle in between (a person walks
up), and the peer comparison (peer.sh) leaves facegate idle while face_recognition runs.
This prints the median of RUNS calls made back to back and of RUNS calls each made after
IDLE_MS of sleep, so thread placement and wake-up costs show (docs/performance.md,
"Thread placement"). Standard library only.

    python3 tests/bench/idle_gap.py --url URL --token TOKEN --gallery bench --image JPEG
(run by tests/bench/idle_gap.sh, which starts the daemon and enrolls the picture)
"""
import argparse
import statistics
import time

from benchlib import KeptIdentify


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--gallery", default="bench")
    ap.add_argument("--image", required=True)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--idle-ms", type=float, default=300)
    args = ap.parse_args()
    kept = KeptIdentify(args.url, args.token, args.gallery, trx_id="idle-gap")
    jpeg = open(args.image, "rb").read()

    def identify():
        reply = kept.identify(jpeg)
        if str(reply.get("status")) != "200":
            raise SystemExit(f"identify failed: {reply}")

    for _ in range(3):
        identify()
    medians = {}
    for mode in ("back_to_back", "after_idle"):
        times = []
        for _ in range(args.runs):
            if mode == "after_idle":
                time.sleep(args.idle_ms / 1000)
            start = time.perf_counter()
            identify()
            times.append((time.perf_counter() - start) * 1000)
        medians[mode] = statistics.median(times)
    print(f"RESULT back_to_back_ms={medians['back_to_back']:.1f} "
          f"after_{args.idle_ms:.0f}ms_idle_ms={medians['after_idle']:.1f}")


if __name__ == "__main__":
    main()
