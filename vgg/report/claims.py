"""The paper's claims (``vgg.spec.CLAIMS``), each with its gain in the paper, ours with a
paired-bootstrap interval over images and seeds, and a verdict; beside it the protocol and
test scales it rests on, the dense-context penalty of its nets (windows-as-crops at
Q = 384), and, for a claim in ``BESIDE``, a comparison shown next to the verdict."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats
from ..evaluate import PROTOCOLS, result_key
from ..profiles import test_scales
from ..spec import CLAIMS, FUSIONS, Claim, PaperRow, Side
from .diagnostics import dense_context_table
from .frame import NOT_RUN, scale_label
from .paper import paper_gain
from .tables import best_members, correct_by_seed, same_images, show

# The practical margin, in percentage points, of the claims that are not "one side is better":
# "no gain" (LRN), "equal" (E vs D) and "not worse" (multi-crop vs dense); see ``verdict``.
EQUIV_MARGIN = 1.0
VERDICTS = ("reproduced", "contradicted", "inconclusive", NOT_RUN)
# the verdict column's colours (background, text): green, red, amber, grey
VERDICT_COLOURS = {"reproduced": ("#d4edda", "#155724"), "contradicted": ("#f8d7da", "#721c24"),
                   "inconclusive": ("#fff3cd", "#856404"), NOT_RUN: ("#e2e3e5", "#383d41")}
PENALTY_Q = 384  # the test scale of the dense-context penalty shown beside each verdict


def _t3(net: str, s: str) -> tuple[Side, PaperRow]:
    return Side(net, s, result_key("dense", s)), PaperRow(3, net, s, "single-scale")


def _beside(text: str, better, worse) -> Claim:
    (b, pb), (w, pw) = better, worse
    return Claim(text, "better", b, w, (pb, pw))


# A comparison shown beside a claim's verdict, not in its place: the paper compares jittered
# and fixed S each at its own Q (Table 3); at the same Q the test scale's share drops out.
BESIDE = {"Jittered S beats fixed S (D)": _beside(
    "same Q: jittered S vs S = 384, both at Q = 384", _t3("D", "256-512"), _t3("D", "384"))}


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


def _gain(runs: pd.DataFrame, c: Claim, n_boot: int) -> dict:
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
    return {"claim": c.text, "kind": c.kind, "paper gain": paper_gain(c), "ours gain": diff, "ci lo": lo,
            "ci hi": hi, "seed std": std, "seed gains": per_seed, "seeds": len(per_seed),
            "verdict": verdict(c.kind, lo, hi)}


def _nets(side: Side) -> list[tuple[str, str]]:
    return list(FUSIONS[side.net].members) if side.net in FUSIONS else [(side.net, side.train_scale)]


def _what(side: Side) -> str:
    return "best member" if side.member else "fused" if side.net in FUSIONS else ""


def side_protocol(side: Side) -> str:
    """The protocol and the paper's test scales Q a side rests on, e.g. "dense, Q = 384";
    a fusion's or its best member's through the members' protocol."""
    name = FUSIONS[side.net].protocol if side.net in FUSIONS else side.protocol.split("@")[0]
    qs = sorted({q for n, s in _nets(side) for q in test_scales(s)[PROTOCOLS[name].scales]})
    return f"{name}, Q = {', '.join(map(str, qs))}"


def claim_protocol(c: Claim) -> str:
    """Both sides' protocols and Q, once where they agree ("(fused vs best member)" added)."""
    b, w = side_protocol(c.better), side_protocol(c.worse)
    if b != w:
        return " vs ".join(f"{_what(s)}: {t}" if _what(s) else t for s, t in ((c.better, b), (c.worse, w)))
    return b + (f" ({_what(c.better) or 'single net'} vs {_what(c.worse) or 'single net'})"
                if _what(c.better) or _what(c.worse) else "")


def dense_penalty(runs: pd.DataFrame, q: int = PENALTY_Q) -> dict[tuple[str, str], float]:
    """{(net, S): window in the dense pass minus the same window as a crop, top-1 points,
    mean over seeds} of the windows-as-crops records at test scale ``q``."""
    ctx = dense_context_table(runs)
    ctx = ctx[ctx["Q"] == q]
    if not len(ctx):
        return {}
    ctx = ctx.merge(runs[["run", "net", "train_scale"]], on="run")
    pen = (ctx["window in dense pass (%)"] - ctx["same window as crop (%)"]).groupby(
        [ctx["net"], ctx["train_scale"]]).mean()
    return {k: float(v) for k, v in pen.items()}


def claims(runs: pd.DataFrame, n_boot: int = 2000, claim_list=CLAIMS) -> pd.DataFrame:
    """One row per claim: the paper's top-1 gain (worse - better, points), ours with a 95%
    paired-bootstrap CI over images and seeds (seed s of one side paired with seed s of the
    other), each seed's own gain and their std, verdict; the protocol and test scales it
    rests on, ``penalty``: {net/S: dense-context penalty at Q = 384} of its nets (NaN where
    not measured), ``best member`` ({seed: net/S} where a side is a fusion's best member),
    and ``beside``: the row of its ``BESIDE`` comparison, or None. A claim whose paper
    number cannot be found raises ``LookupError``."""
    pen = dense_penalty(runs) if len(runs) else {}
    rows = []
    for c in claim_list:
        r = _gain(runs, c, n_boot)
        nets = list(dict.fromkeys(_nets(c.better) + _nets(c.worse)))
        best = next((best_members(runs, s) for s in (c.better, c.worse) if s.member == "best"), {})
        r.update({"protocol": claim_protocol(c), "best member": best,
                  "penalty": {f"{n}/{scale_label(s)}": pen.get((n, s), np.nan) for n, s in nets},
                  "beside": _gain(runs, BESIDE[c.text], n_boot) if c.text in BESIDE else None})
        rows.append(r)
    return pd.DataFrame(rows, columns=["claim", "kind", "paper gain", "ours gain", "ci lo", "ci hi", "seed std",
                                       "seed gains", "seeds", "verdict", "protocol", "best member", "penalty",
                                       "beside"])


def verdict_counts(c: pd.DataFrame) -> dict[str, int]:
    """{verdict: how many claims have it}, every verdict listed (0 where none)."""
    counts = c["verdict"].value_counts()
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def bound(x: float) -> str:
    """A CI bound to one decimal, or two where one would print a sign-less-looking 0.0: a
    verdict turns on the bound's sign, so -0.02 must not read as -0.0."""
    s = f"{x:+.1f}"
    return f"{x:+.2f}" if s in ("+0.0", "-0.0") and x != 0 else s


def _ours(r) -> str:
    if r["seeds"] == 0:
        return NOT_RUN
    t = f"{r['ours gain']:+.1f} [{bound(r['ci lo'])}, {bound(r['ci hi'])}]"
    if r["seeds"] > 1:  # with 2-3 seeds each seed's gain says more than their std
        return t + "; per seed: " + ", ".join(f"{g:+.1f}" for g in r["seed gains"])
    return t + "; one seed"  # the interval then covers the images only, not the training run


def penalty_text(penalty: dict) -> str:
    """The penalty column: each net's penalty in points, '–' where not measured (or for all)."""
    if all(np.isnan(v) for v in penalty.values()):
        return "–"
    return ", ".join(f"{k} {'–' if np.isnan(v) else f'{v:+.1f}'}" for k, v in penalty.items())


def claims_display(c: pd.DataFrame) -> pd.DataFrame:
    """The claims table as printed: numbers as text, 'not run yet' where missing."""
    out = pd.DataFrame({"claim": c["claim"], "paper (points)": c["paper gain"].map(lambda x: f"{x:+.1f}")})
    out["ours (points, 95% CI)"] = [_ours(r) for _, r in c.iterrows()]
    out["verdict"] = c["verdict"]
    protocol = []
    for _, r in c.iterrows():
        best = r.get("best member") or {}
        protocol.append(r["protocol"] + (("; best member per seed: " + ", ".join(best.values())) if best else ""))
    out["protocol (paper's Q)"] = protocol
    out[f"dense-context penalty, Q = {PENALTY_Q} (points)"] = c["penalty"].map(penalty_text)
    beside = []
    for b in c["beside"]:
        beside.append("–" if b is None else f"{b['claim']}: paper {b['paper gain']:+.1f}, ours {_ours(b)}; "
                                            f"{b['verdict']}")
    out["beside the verdict"] = beside
    return out


def verdict_table(c: pd.DataFrame, compact: bool = False):
    """``claims_display`` for the page, its verdict column coloured by verdict; ``compact``:
    the answer at a glance (claim, verdict, the paper's gain, ours with its interval), the
    protocol, penalty and per-seed gains left to the claims chapter."""
    def colour(v):
        bg, fg = VERDICT_COLOURS.get(v, VERDICT_COLOURS[NOT_RUN])
        return f"background-color: {bg}; color: {fg}; font-weight: bold"
    d = claims_display(c)
    if compact:
        d = d[["claim", "verdict", "paper (points)", "ours (points, 95% CI)"]].copy()
        d["ours (points, 95% CI)"] = d["ours (points, 95% CI)"].str.split(";").str[0]
    return show(d, wrap=True).map(colour, subset=["verdict"])


__all__ = ["EQUIV_MARGIN", "VERDICTS", "VERDICT_COLOURS", "PENALTY_Q", "BESIDE", "verdict", "claims", "verdict_counts",
           "bound", "claims_display", "verdict_table", "side_protocol", "claim_protocol", "dense_penalty", "penalty_text"]
