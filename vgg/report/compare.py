"""The book's profiles side by side (issue 19): each paper table and each claim at every
profile the book compares, and which verdicts change with the profile.

The profiles are scale-downs of the paper that differ in geometry: ``cpu`` (64-pixel crops,
a 2×2 last feature map) and ``cpu128`` (128-pixel crops, 4×4, trained to convergence). A
verdict that holds at one and not the other measures the scale-down, not the paper.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec import CLAIMS
from .claims import VERDICT_COLOURS, _ours, claims, dense_penalty
from .frame import NOT_RUN, book_profile, histories, load_runs, scale_label, study_rank
from .tables import display_table, show, table

COMPARED = ("cpu", "cpu128")  # the book's profiles, in the order their columns appear


def compared_runs(runs_dir=None, profiles=COMPARED) -> dict[str, pd.DataFrame]:
    """{profile: its complete runs}, read from ``runs_dir``: the profile the book shows first,
    then each other compared profile that has complete runs (a book of smoke runs compares none)."""
    every = load_runs(None, runs_dir)[0]
    shown = book_profile(runs_dir, every)
    have = set(every["profile"]) if len(every) else set()
    return by_profile(every, [shown] + [p for p in profiles if p != shown and p in have])


def by_profile(every: pd.DataFrame, profiles=COMPARED) -> dict[str, pd.DataFrame]:
    """{profile: its complete runs} of ``load_runs(None)``'s frame, for each compared profile."""
    if not len(every):
        return {p: every for p in profiles}
    return {p: every[every["profile"] == p].reset_index(drop=True) for p in profiles}


def table_by_profile(n: int, runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Table ``n`` with the paper's columns once and ours per profile: ``<profile> top-1``
    (mean over seeds), its interval text, top-5 and seeds, as ``table`` gives them."""
    out = None
    for p, r in runs.items():
        t = table(n, r)
        ours = [c for c in t.columns if c.startswith("ours") or c in ("ci lo", "ci hi", "seeds")]
        if out is None:
            out = t.drop(columns=ours)
        for c in ours:
            out[f"{p}: {c}"] = t[c].to_numpy()
    return out


def profiles_in(t: pd.DataFrame) -> list[str]:
    """The profiles of a ``table_by_profile`` or ``claims_by_profile`` frame, in column order."""
    return list(dict.fromkeys(c.split(": ")[0] for c in t.columns if ": " in c))


def display_by_profile(t: pd.DataFrame) -> pd.DataFrame:
    """``table_by_profile`` as printed: labels, the paper's top-1, each profile's top-1 with
    its interval and seeds, then top-5 (the paper's, then each profile's)."""
    paper = display_table(t[[c for c in t.columns if ":" not in c]])
    labels = [c for c in paper.columns if not c.startswith("paper")]
    out = paper[labels + [c for c in ("paper top-1",) if c in paper.columns]].copy()
    profiles = profiles_in(t)
    for p in profiles:
        out[f"{p} top-1 (95% CI)"] = t[f"{p}: ours top-1 (95% CI)"]
        out[f"{p} seeds"] = t[f"{p}: seeds"].astype(int)
    if "paper top-5" in paper.columns:
        out["paper top-5"] = paper["paper top-5"]
    for p in profiles:
        out[f"{p} top-5"] = t[f"{p}: ours top-5"].map(lambda x: NOT_RUN if pd.isna(x) else f"{x:.1f}")
    return out


def claims_by_profile(runs: dict[str, pd.DataFrame], n_boot: int = 2000, claim_list=CLAIMS) -> pd.DataFrame:
    """One row per claim: the paper's gain, then per profile ours (``<profile> gain``, its
    interval, seeds, verdict) and ``changes``: True where the compared profiles with a
    verdict disagree (not run yet counts as no verdict)."""
    out = None
    for p, r in runs.items():
        c = claims(r, n_boot=n_boot, claim_list=claim_list)
        if out is None:
            out = c[["claim", "kind", "paper gain"]].copy()
        for col in ("ours gain", "ci lo", "ci hi", "seed gains", "seeds", "verdict"):
            out[f"{p}: {col}"] = c[col].to_numpy()
    verdicts = out[[f"{p}: verdict" for p in runs]]
    out["changes"] = [len({v for v in row if v != NOT_RUN}) > 1 for row in verdicts.itertuples(index=False)]
    return out


def _ours_of(c: pd.DataFrame, p: str) -> list[str]:
    cols = {k: f"{p}: {k}" for k in ("ours gain", "ci lo", "ci hi", "seed gains", "seeds")}
    return [_ours(pd.Series({k: r[v] for k, v in cols.items()})).split(";")[0] for _, r in c.iterrows()]


def verdicts_by_profile(c: pd.DataFrame):
    """``claims_by_profile`` for the page: claim, the paper's gain, each profile's gain with
    its interval and seeds and its verdict (coloured), and whether the verdict changes."""
    d = pd.DataFrame({"claim": c["claim"], "paper (points)": c["paper gain"].map(lambda x: f"{x:+.1f}")})
    profiles = profiles_in(c)
    for p in profiles:
        n = c[f"{p}: seeds"].astype(int)
        d[f"{p} (points, 95% CI)"] = [t if k == 0 else f"{t} ({k} seed{'s' if k > 1 else ''})"
                                      for t, k in zip(_ours_of(c, p), n)]
        d[f"{p} verdict"] = c[f"{p}: verdict"]
    d["changes with profile"] = c["changes"].map({True: "yes", False: "no"})

    def colour(v):
        bg, fg = VERDICT_COLOURS.get(v, VERDICT_COLOURS[NOT_RUN])
        return f"background-color: {bg}; color: {fg}; font-weight: bold"
    return show(d, wrap=True).map(colour, subset=[f"{p} verdict" for p in profiles])


def penalty_by_profile(runs: dict[str, pd.DataFrame], qs=(256, 384)) -> pd.DataFrame:
    """Per net and training scale, the dense-context penalty (window in the dense pass minus
    the same window as a crop, top-1 points, mean over seeds) at each test scale Q in ``qs``
    and each profile; NaN where not measured. Rows with no measurement at all are left out."""
    cols = {(p, q): dense_penalty(runs[p], q) if len(runs[p]) else {} for p in runs for q in qs}
    keys = sorted({k for d in cols.values() for k in d}, key=lambda k: study_rank(*k))  # the plan's order
    rows = [dict({"net": n, "training S": scale_label(s)},
                 **{f"{p}, Q = {q}": cols[p, q].get((n, s), np.nan) for p in runs for q in qs}) for n, s in keys]
    return pd.DataFrame(rows, columns=["net", "training S"] + [f"{p}, Q = {q}" for p in runs for q in qs])


def epoch_cost(runs: dict[str, pd.DataFrame], train_scale: str = "256") -> pd.DataFrame:
    """Per net at training scale ``train_scale``: each profile's median seconds per epoch and
    training images per second over its runs' epochs (``history.csv``; one torch thread per
    run, on whichever machine made it), and the ratio of the last profile's epoch to the
    first's. Nets run at one profile only get NaN for the others."""
    names = list(runs)
    per = {}
    for p, r in runs.items():
        sel = r[r["train_scale"] == train_scale] if len(r) else r
        h = histories(sel).merge(sel[["run", "net"]], on="run") if len(sel) else pd.DataFrame()
        per[p] = h.groupby("net").agg(seconds=("seconds", "median"), img_s=("images_per_s", "median"),
                                      epochs=("epoch", "size")) if len(h) else pd.DataFrame()
    nets = list(dict.fromkeys(n for d in per.values() for n in d.index))
    rows = []
    for n in nets:
        row = {"net": n}
        for p in names:
            d = per[p]
            row[f"{p} s/epoch"] = float(d.loc[n, "seconds"]) if n in d.index else np.nan
            row[f"{p} images/s"] = float(d.loc[n, "img_s"]) if n in d.index else np.nan
        row[f"{names[-1]} ÷ {names[0]}"] = row[f"{names[-1]} s/epoch"] / row[f"{names[0]} s/epoch"]
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["COMPARED", "epoch_cost", "compared_runs", "by_profile", "table_by_profile", "display_by_profile",
           "claims_by_profile", "verdicts_by_profile", "penalty_by_profile"]
