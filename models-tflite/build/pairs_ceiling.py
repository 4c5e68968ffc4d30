"""How far can dlib's network go on the LFW development pairs? (docs/accuracy.md,
"The network's ceiling on these images"). Three checks, all scored with the 10-fold
protocol of `facegate eval lfw` (tta_score.py's functions; a pair without a face is an error):

    # 1. dlib's own pipeline (face_recognition: HOG detector, 5-point shape predictor, dlib's
    #    chip, float ResNet), in the peer environment tests/bench/peer.sh makes:
    target/peer/venv-bin/bin/python pairs_ceiling.py native LFW_DIR native.json
    # 2. facegate's templates of every image (any config):
    facegate --config configs/accurate.toml eval identify --images LFW_DIR/images \\
        --embeddings-cache acc.json --json
    # 3. score either, plain, with pair-score normalisation against an impostor cohort, and
    #    fused with the other:
    python pairs_ceiling.py score LFW_DIR acc.json [native.json]
    # 4. learned linear maps (WCCN) before the cosine, fitted on the other file's people:
    python pairs_ceiling.py projection LFW_DIR acc.json

The cohort for a pairs file is every image of the people that file does not use (for
pairsDevTrain, the people of pairsDevTest, and the other way round), so no test person is
ever their own impostor. numpy only for `score`; `native` needs face_recognition.
"""
import json
import os
import sys

import numpy as np

from tta_score import k_fold, pairs, tar_at_far

PAIR_FILES = ("pairsDevTrain.txt", "pairsDevTest.txt")


def native(lfw, out):
    """Embeds every image of both pairs files with face_recognition (dlib), nearest-centre
    face; where HOG finds no face even upsampled twice, the median HOG box of the set."""
    import face_recognition

    files = sorted({f for pf in PAIR_FILES for p in pairs(os.path.join(lfw, pf)) for f in p[:2]})
    rows, misses, boxes = {}, {}, []
    for n, f in enumerate(files):
        path = os.path.join(lfw, "images", f)
        if n % 500 == 0:
            print(f"native: {n}/{len(files)}", file=sys.stderr, flush=True)
        if not os.path.exists(path):
            continue
        img = face_recognition.load_image_file(path)
        h, w = img.shape[:2]
        for upsample in (1, 2):
            found = face_recognition.face_locations(img, number_of_times_to_upsample=upsample)
            if found:
                break
        if not found:
            misses[f] = img  # embedded once every box is known (the median box)
            continue
        box = min(found, key=lambda b: ((b[0] + b[2]) / 2 - h / 2) ** 2
                  + ((b[1] + b[3]) / 2 - w / 2) ** 2)
        boxes.append(box)
        rows[f] = embed_row(face_recognition, img, box, True)
    median = tuple(int(v) for v in np.median(np.array(boxes), axis=0))
    for f, img in misses.items():
        rows[f] = embed_row(face_recognition, img, median, False)
    print(f"native: {len(rows)} images, HOG found no face in {len(misses)} (median box used)",
          file=sys.stderr)
    with open(out, "w") as fh:
        json.dump(rows, fh)


def embed_row(face_recognition, img, box, hog_found):
    enc = face_recognition.face_encodings(img, [box], model="small")[0]
    return {"embedding": enc.tolist(), "hog_found": hog_found}


def load(path):
    """Unit-length embeddings by `Name/Name_NNNN.jpg`, from either kind of file."""
    raw = json.load(open(path))
    if "files" in raw:  # facegate's --embeddings-cache
        items = zip(raw["files"], raw["embeddings"])
    else:
        items = ((f, r["embedding"]) for f, r in raw.items())
    out = {}
    for f, e in items:
        if e is not None:
            v = np.asarray(e, dtype=np.float64)
            out["/".join(f.split("/")[-2:])] = v / np.linalg.norm(v)
    return out


def pair_scores(ps, score):
    s = np.array([score(a, b) for a, b, _, _ in ps], dtype=np.float64)
    same = np.array([p[2] for p in ps])
    fold = np.array([p[3] for p in ps])
    return s, same, fold


def cohort_sims(emb, cohort):
    """Per image: its cosines to the cohort, highest first (sorted once, sliced per top)."""
    keys = list(emb)
    return keys, -np.sort(-(np.stack([emb[k] for k in keys]) @ cohort.T), axis=1)


def cohort_stats(keys, sims, top):
    """Per image: mean and std of its `top` highest cosines to the cohort (all if 0)."""
    sims = sims[:, :top] if top else sims
    stats = dict(zip(keys, zip(sims.mean(1), sims.std(1))))
    return lambda k: stats.get(k, (np.nan, np.nan))  # nan: a missing face, scored as an error


def score(lfw, path, other=None):
    emb = load(path)
    second = load(other) if other else None
    for pf in PAIR_FILES:
        ps = pairs(os.path.join(lfw, pf))
        people = {f.split("/")[0] for p in ps for f in p[:2]}
        cohort = np.stack([v for k, v in emb.items() if k.split("/")[0] not in people])

        def cos(a, b, e=emb):
            return e[a] @ e[b] if a in e and b in e else np.nan  # nan: a missing face

        rows = [("plain cosine", lambda a, b: cos(a, b))]
        keys, sims = cohort_sims(emb, cohort)
        for top in (0, 50, 200):
            st = cohort_stats(keys, sims, top)

            def snorm(a, b, st=st):
                (ma, sa), (mb, sb), c = st(a), st(b), cos(a, b)
                return 0.5 * ((c - ma) / sa + (c - mb) / sb)

            def lead(a, b, st=st):
                return cos(a, b) - 0.5 * (st(a)[0] + st(b)[0])

            label = f"top {top}" if top else "whole cohort"
            rows += [(f"S-norm, {label}", snorm), (f"cosine - cohort mean, {label}", lead)]
        if second:
            for w in (0.3, 0.5, 0.7):
                rows.append((f"{w} x this + {1 - w:.1f} x second file",
                             lambda a, b, w=w: w * cos(a, b) + (1 - w) * cos(a, b, second)))
        print(f"{pf} ({len(ps)} pairs, cohort {len(cohort)} images of other people)")
        for label, fn in rows:
            s, same, fold = pair_scores(ps, fn)
            mean, std = k_fold(s, same, fold)
            print(f"  {label:40} 10-fold {100 * mean:.2f} % ± {100 * std:.2f}, "
                  f"TAR @ FAR 1e-3 {100 * tar_at_far(s, same):.2f} %")


def within_class_scatter(emb, people_out):
    """Mean and within-person scatter of the unit embeddings of every person not in
    `people_out` who has two or more images, each person weighted equally (LFW's long tail:
    a few people have dozens of images)."""
    by_person = {}
    for k, v in emb.items():
        if k.split("/")[0] not in people_out:
            by_person.setdefault(k.split("/")[0], []).append(v)
    every = np.stack([v for vs in by_person.values() for v in vs])
    scatter, weight = np.zeros((every.shape[1],) * 2), 0.0
    for vs in by_person.values():
        if len(vs) >= 2:
            d = np.stack(vs) - np.mean(vs, axis=0)
            scatter += d.T @ d / len(vs)
            weight += 1.0
    return every.mean(0), scatter / weight, len(every)


def projection(lfw, path):
    """Learned linear maps before the cosine (WCCN: the within-person scatter raised to
    -alpha, shrunk towards its mean variance), fitted on the other pairs file's people."""
    emb = load(path)
    for pf in PAIR_FILES:
        ps = pairs(os.path.join(lfw, pf))
        people = {f.split("/")[0] for p in ps for f in p[:2]}
        mean, sw, n = within_class_scatter(emb, people)
        print(f"{pf} ({len(ps)} pairs; fitted on {n} images of other people)")
        for centre in (False, True):
            for alpha, shrink in ((0.0, 0.0), (0.1, 0.0), (0.25, 0.0), (0.25, 0.5), (0.5, 0.0),
                                  (0.5, 0.5)):
                d = sw.shape[0]
                ev, vec = np.linalg.eigh((1 - shrink) * sw + shrink * np.trace(sw) / d * np.eye(d))
                proj = vec * ev ** -alpha
                mapped = {k: (v - mean * centre) @ proj for k, v in emb.items()}
                mapped = {k: v / np.linalg.norm(v) for k, v in mapped.items()}

                def cos(a, b, e=mapped):
                    return e[a] @ e[b] if a in e and b in e else np.nan

                s, same, fold = pair_scores(ps, cos)
                m, sd = k_fold(s, same, fold)
                label = f"{'centred, ' if centre else ''}alpha {alpha}, shrink {shrink}"
                print(f"  {label:40} 10-fold {100 * m:.2f} % ± {100 * sd:.2f}, "
                      f"TAR @ FAR 1e-3 {100 * tar_at_far(s, same):.2f} %")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"native": native, "score": score, "projection": projection}[cmd](*args)
