"""The paper's claims (``vgg.spec.CLAIMS``), each with its gain in the paper, ours with a
paired-bootstrap interval over images and seeds, and a verdict."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats
from ..spec import CLAIMS
from .frame import NOT_RUN
from .paper import paper_gain
from .tables import correct_by_seed, same_images

# The practical margin, in percentage points, of the claims that are not "one side is better":
# "no gain" (LRN), "equal" (E vs D) and "not worse" (multi-crop vs dense); see ``verdict``.
EQUIV_MARGIN = 1.0
VERDICTS = ("reproduced", "contradicted", "inconclusive", NOT_RUN)


def verdict(kind: str, lo: float, hi: float, equiv_margin: float = EQUIV_MARGIN) -> str:
    """From the 95% CI [lo, hi] of (worse's error - better's error), in points.

    better: reproduced if the CI is above 0, contradicted if below, else inconclusive.
    not worse: reproduced if the CI lies above -margin, contradicted if below it.
    no gain (the first does not help, like LRN): contradicted if the CI is above 0 (it does
    help), reproduced if it lies below +margin (it helps by less than the margin at most,
    or hurts), else inconclusive.
    equal (E vs D): reproduced if the CI lies within +-margin, contradicted if it lies
    wholly outside (above +margin or below -margin), else inconclusive.
    """
    if np.isnan(lo) or np.isnan(hi):
        return NOT_RUN
    if kind == "better":
        return "reproduced" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"
    if kind == "not worse":  # non-inferiority: worse by less than the margin at most
        return "reproduced" if lo > -equiv_margin else "contradicted" if hi < -equiv_margin else "inconclusive"
    if kind == "no gain":
        return "contradicted" if lo > 0 else "reproduced" if hi < equiv_margin else "inconclusive"
    if kind == "equal":
        if lo > -equiv_margin and hi < equiv_margin:
            return "reproduced"
        return "contradicted" if lo > equiv_margin or hi < -equiv_margin else "inconclusive"
    raise ValueError(f"unknown claim kind {kind!r}; valid: better, not worse, no gain, equal")


def claims(runs: pd.DataFrame, n_boot: int = 2000, claim_list=CLAIMS) -> pd.DataFrame:
    """One row per claim: the paper's top-1 gain (worse - better, points), ours with a 95%
    paired-bootstrap CI over images and seeds (seed s of one side paired with seed s of the
    other), each seed's own gain and their std, verdict. A claim whose paper number cannot
    be found raises ``LookupError``."""
    rows = []
    for c in claim_list:
        paper = paper_gain(c)
        cb, cw = correct_by_seed(runs, c.better), correct_by_seed(runs, c.worse)
        seeds = same_images(cb, cw)
        diff = lo = hi = std = np.nan
        per_seed = []
        if seeds:
            a = np.stack([cw[s] for s in seeds])  # [seeds, images]
            b = np.stack([cb[s] for s in seeds])
            diff, lo, hi = stats.paired_bootstrap_diff(a, b, n_boot=n_boot)
            per_seed = [stats.error_percent(cw[s]) - stats.error_percent(cb[s]) for s in seeds]
            std = stats.mean_std(per_seed)[1]
        rows.append({"claim": c.text, "kind": c.kind, "paper gain": paper, "ours gain": diff,
                     "ci lo": lo, "ci hi": hi, "seed std": std, "seed gains": per_seed, "seeds": len(per_seed),
                     "verdict": verdict(c.kind, lo, hi)})
    return pd.DataFrame(rows, columns=["claim", "kind", "paper gain", "ours gain", "ci lo", "ci hi", "seed std",
                                       "seed gains", "seeds", "verdict"])


def verdict_counts(c: pd.DataFrame) -> dict[str, int]:
    """{verdict: how many claims have it}, every verdict listed (0 where none)."""
    counts = c["verdict"].value_counts()
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def bound(x: float) -> str:
    """A CI bound to one decimal, or two where one would print a sign-less-looking 0.0: a
    verdict turns on the bound's sign, so -0.02 must not read as -0.0."""
    s = f"{x:+.1f}"
    return f"{x:+.2f}" if s in ("+0.0", "-0.0") and x != 0 else s


def claims_display(c: pd.DataFrame) -> pd.DataFrame:
    """The claims table as printed: numbers as text, 'not run yet' where missing."""
    out = pd.DataFrame({"claim": c["claim"], "paper (points)": c["paper gain"].map(lambda x: f"{x:+.1f}")})
    ours = []
    for _, r in c.iterrows():
        if r["seeds"] == 0:
            ours.append(NOT_RUN)
            continue
        t = f"{r['ours gain']:+.1f} [{bound(r['ci lo'])}, {bound(r['ci hi'])}]"
        if r["seeds"] > 1:  # with 2-3 seeds each seed's gain says more than their std
            t += "; per seed: " + ", ".join(f"{g:+.1f}" for g in r["seed gains"])
        else:  # the interval then covers the images only, not the training run
            t += "; one seed"
        ours.append(t)
    out["ours (points, 95% CI)"] = ours
    out["verdict"] = c["verdict"]
    return out


__all__ = ["EQUIV_MARGIN", "VERDICTS", "verdict", "claims", "verdict_counts", "bound", "claims_display"]
