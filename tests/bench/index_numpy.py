"""One-thread numpy f32 scan: the job `facegate bench index` does, done the plain way.

N random unit vectors (float32, N x dim), queries that are noisy copies of random rows;
each search is `argmax(M @ q)` on one core (the caller sets the BLAS thread variables).
Prints one JSON line: templates, search_ms_median, bytes_per_template.
"""

import argparse
import json
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates", type=int, required=True)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--noise", type=float, default=0.75)
    a = ap.parse_args()
    rng = np.random.default_rng(7)
    m = np.empty((a.templates, a.dim), dtype=np.float32)
    step = 100_000
    for s in range(0, a.templates, step):
        block = rng.standard_normal((min(step, a.templates - s), a.dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        m[s:s + len(block)] = block
    times = []
    for _ in range(a.queries):
        src = int(rng.integers(a.templates))
        noise = rng.standard_normal(a.dim).astype(np.float32)
        q = m[src] + a.noise * noise / np.linalg.norm(noise)
        q /= np.linalg.norm(q)
        t = time.perf_counter()
        scores = m @ q
        best = int(np.argmax(scores))
        times.append(time.perf_counter() - t)
        assert scores[best] >= scores[src]
    times.sort()
    print(json.dumps({
        "templates": a.templates,
        "search_ms_median": times[len(times) // 2] * 1e3,
        "bytes_per_template": m.nbytes / a.templates,
        "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
