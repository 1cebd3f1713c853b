#!/usr/bin/env python3
"""Does a calibration fitted on some speakers hold on speakers it has not seen?

Reads a trial list and the per-trial scores `voiceprint eval --scores-out` wrote for it, and refits
the shipped recipe (logistic regression of the raw cosine at prior 0.5, threshold for a target FAR
from the larger of the Gaussian and the empirical non-target tail, as `src/score/` does) on part of
the speakers, then measures it on trials of the others:

* leave-one-speaker-out over the real speakers (fit on every trial without speaker S, test on the
  trials with S on either side);
* synthetic -> real (fit on trials among synthetic voices only, test on trials among real ones) and
  the reverse.

For each held-out set it prints Cllr (bits; 1.0 = no information, lower is better) and the actual
false-accept and false-reject rates at the threshold set for a nominal FAR of 1 %.

    python3 docs/trials/calibration_cv.py TRIALS.csv SCORES.csv [--far 0.01]

Standard library only.
"""

import argparse
import csv
import math
import statistics
from statistics import NormalDist

SYNTH_ENGINES = ("espeak", "festival", "flite")


def speaker(path):
    parts = path.replace("\\", "/").split("/")
    for i, p in enumerate(parts[:-1]):
        if p in ("asterisk", "synth"):
            return parts[i + 1]
    raise ValueError(f"no speaker in {path}")


def is_synthetic(spk):
    return spk.startswith(SYNTH_ENGINES)


def load(trials_path, scores_path):
    with open(trials_path, newline="") as f:
        trials = list(csv.DictReader(f))
    with open(scores_path, newline="") as f:
        scores = {int(r["line"]): r for r in csv.DictReader(f)}
    out = []
    for i, t in enumerate(trials):
        s = scores.get(i + 2)
        if not s or s["raw"] in ("", "nan"):
            continue
        out.append((speaker(t["enroll"]), speaker(t["test"]), t["target"] == "1", float(s["raw"])))
    return out


def fit(tar, non, prior=0.5, iters=100):
    """Prior-weighted logistic regression llr = a + b*x by Newton's method."""
    logit_prior = math.log(prior / (1 - prior))
    data = [(x, 1.0, prior / len(tar)) for x in tar] + [(x, 0.0, (1 - prior) / len(non)) for x in non]
    a, b = 0.0, 1.0
    for _ in range(iters):
        ga = gb = haa = hab = hbb = 0.0
        for x, y, w in data:
            z = a + b * x + logit_prior
            p = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
            g, h = w * (p - y), w * p * (1 - p)
            ga += g
            gb += g * x
            haa += h
            hab += h * x
            hbb += h * x * x
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return a, b


def threshold_score(non, far):
    """Cosine threshold for `far`: the larger of the Gaussian and the empirical tail (as shipped)."""
    mean, std = statistics.fmean(non), statistics.pstdev(non)
    gaussian = mean + std * NormalDist().inv_cdf(1 - far)
    ranked = sorted(non, reverse=True)
    if far * len(ranked) >= 10:
        return max(gaussian, ranked[max(1, math.ceil(far * len(ranked))) - 1])
    return gaussian


def cllr(tar, non, a, b):
    def softplus_bits(z):
        return (z if z > 30 else math.log1p(math.exp(z))) / math.log(2)

    c_tar = statistics.fmean(softplus_bits(-(a + b * x)) for x in tar)
    c_non = statistics.fmean(softplus_bits(a + b * x) for x in non)
    return 0.5 * (c_tar + c_non)


def evaluate(train, test, far):
    tr_t = [x for *_, t, x in train if t]
    tr_n = [x for *_, t, x in train if not t]
    te_t = [x for *_, t, x in test if t]
    te_n = [x for *_, t, x in test if not t]
    if len(tr_t) < 2 or len(tr_n) < 2 or not te_n:
        return None
    a, b = fit(tr_t, tr_n)
    thr = threshold_score(tr_n, far)
    return {
        "targets": len(te_t),
        "nontargets": len(te_n),
        "cllr": cllr(te_t, te_n, a, b) if te_t else float("nan"),
        "far": sum(x >= thr for x in te_n) / len(te_n),
        "frr": sum(x < thr for x in te_t) / len(te_t) if te_t else float("nan"),
    }


def row(label, r):
    if r is None:
        print(f"| {label} | — | — | — | — | — |")
        return
    print(
        f"| {label} | {r['targets']:,} / {r['nontargets']:,} | {r['cllr']:.3f} | "
        f"{100 * r['far']:.2f} % | {100 * r['frr']:.1f} % |"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trials")
    ap.add_argument("scores")
    ap.add_argument("--far", type=float, default=0.01)
    args = ap.parse_args()
    trials = load(args.trials, args.scores)
    speakers = sorted({s for e, t, *_ in trials for s in (e, t)})
    real = [s for s in speakers if not is_synthetic(s)]
    print(f"{args.trials}: {len(trials):,} scored trials, {len(real)} real and "
          f"{len(speakers) - len(real)} synthetic speakers; nominal FAR {100 * args.far:g} %\n")
    print("| held-out set | targets / non-targets | Cllr (bits) | actual FAR | FRR |")
    print("|---|---|---|---|---|")
    row("in-sample (all trials, for reference)", evaluate(trials, trials, args.far))
    folds = []
    for s in real:
        held = [x for x in trials if s in (x[0], x[1])]
        rest = [x for x in trials if s not in (x[0], x[1])]
        r = evaluate(rest, held, args.far)
        folds.append(r)
        row(f"real speaker `{s}` left out", r)
    ok = [r for r in folds if r]
    if ok:
        pooled = {
            "targets": sum(r["targets"] for r in ok),
            "nontargets": sum(r["nontargets"] for r in ok),
            "cllr": statistics.fmean(r["cllr"] for r in ok if not math.isnan(r["cllr"])),
            "far": sum(r["far"] * r["nontargets"] for r in ok) / sum(r["nontargets"] for r in ok),
            "frr": sum(r["frr"] * r["targets"] for r in ok if r["targets"])
            / max(1, sum(r["targets"] for r in ok)),
        }
        row("**leave-one-real-speaker-out, all folds** (Cllr: mean of folds)", pooled)
    synth_only = [x for x in trials if is_synthetic(x[0]) and is_synthetic(x[1])]
    real_only = [x for x in trials if not is_synthetic(x[0]) and not is_synthetic(x[1])]
    row("fit on synthetic voices, test on real speakers", evaluate(synth_only, real_only, args.far))
    row("fit on real speakers, test on synthetic voices", evaluate(real_only, synth_only, args.far))


if __name__ == "__main__":
    main()
