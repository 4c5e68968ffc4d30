"""Scores sets of test-time chips on per-chip embeddings written by
`cargo run --release --example tta_chips` (docs/accuracy.md, "Test-time chips").

    python tta_score.py PAIRS LIST DUMP:CHIPS [DUMP2:CHIPS2 ...]

PAIRS is an LFW pairs file with a single-count header (pairsDevTrain.txt), LIST the image
list given to tta_chips, each DUMP its output with CHIPS chips per image; the chips of
all dumps are numbered in order (0 = the first dump's aligned chip). Each set in SETS
(chip numbers) is scored template against template, 10-fold as `facegate eval lfw`
(threshold from the other nine folds; a pair without a face is an error). numpy only.
"""
import sys

import numpy as np

# The sets of docs/accuracy.md for jit8.toml (chips 0-8) followed by mesh.toml (chip 9).
SETS = [[0]] + [[0, i] for i in range(1, 10)] + [
    [0, 1, 2], [0, 3, 4], [0, 1, 2, 3, 4], [0, 5, 6], [0, 7, 8],
    [0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 7, 8], [0, 5, 6, 7, 8], list(range(9)),
    list(range(10)), [0, 1, 2, 3, 4, 9], [9],
]


def pairs(path):
    lines = [line.split() for line in open(path) if line.strip()]
    n = int(lines[0][0])
    out = []
    for i, f in enumerate(lines[1:]):
        same = i < n
        fold = min((i if same else i - n) * 10 // n, 9)
        if same:
            a, b = (f[0], f[1]), (f[0], f[2])
        else:
            a, b = (f[0], f[1]), (f[2], f[3])
        name = lambda p: f"{p[0]}/{p[0]}_{int(p[1]):04d}.jpg"
        out.append((name(a), name(b), same, fold))
    return out


def best_threshold(s, same):
    u = np.unique(s)
    cands = np.concatenate([(u[1:] + u[:-1]) / 2, [u[0] - 1e-4, u[-1] + 1e-4]])
    genuine, impostor = np.sort(s[same]), np.sort(s[~same])
    right = (len(genuine) - np.searchsorted(genuine, cands, "left")) + np.searchsorted(
        impostor, cands, "left")
    return cands[np.argmax(right)]


def k_fold(s, same, fold):
    accs = []
    for k in range(10):
        train = (fold != k) & ~np.isnan(s)
        t = best_threshold(s[train], same[train])
        test = fold == k
        accs.append(np.mean(np.where(np.isnan(s[test]), False, (s[test] >= t) == same[test])))
    return np.mean(accs), np.std(accs)


def tar_at_far(s, same, far=1e-3):
    impostor = np.sort(s[~same & ~np.isnan(s)])[::-1]
    t = impostor[int(np.floor(far * (~same).sum()))] + 1e-6
    return np.mean(np.where(np.isnan(s[same]), False, s[same] >= t))


def main():
    pairs_path, list_path, *dumps = sys.argv[1:]
    names = [line.strip() for line in open(list_path) if line.strip()]
    index = {n: i for i, n in enumerate(names)}
    parts = []
    for d in dumps:
        path, chips = d.rsplit(":", 1)
        parts.append(np.fromfile(path, dtype="<f4").reshape(len(names), int(chips), 128))
    x = np.concatenate(parts, axis=1)
    ps = pairs(pairs_path)
    a = np.array([index[p[0]] for p in ps])
    b = np.array([index[p[1]] for p in ps])
    same = np.array([p[2] for p in ps])
    fold = np.array([p[3] for p in ps])
    for chips in SETS:
        if max(chips) >= x.shape[1]:
            continue
        e = x[:, chips, :].sum(1)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        s = (e[a] * e[b]).sum(1)
        mean, std = k_fold(s, same, fold)
        print(f"chips {chips}: 10-fold {100 * mean:.2f} % ± {100 * std:.2f}, "
              f"TAR @ FAR 1e-3 {100 * tar_at_far(s, same):.2f} %")


if __name__ == "__main__":
    main()
