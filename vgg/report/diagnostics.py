"""Reading the verdicts: how closely each net fits its training crops, and how far dense
evaluation at our scale trails a crop (the claims and protocol chapters).

The functions return numbers and frames; the chapters' Markdown says what they mean.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluate import PROTOCOLS
from ..model import DOWNSAMPLE
from ..profiles import PAPER_CROP, PROFILES, test_scales
from ..spec import CLAIMS, FUSIONS, Side, row, run_name
from .frame import by_study_order, eval_table, histories, scale_label, study_rank

# ~2 points of top-1: the noise of the held-out slice (about 475 images), see the protocol chapter
HOLDOUT_NOISE = 2.0
SAME_FIT = 1.0  # a training error within a point of the reference net's counts as the same fit
DENSE = ("dense", "multi-scale", "multi-crop+dense", "dense-softmax")  # the protocols with dense windows


# --- fit ---------------------------------------------------------------------------------

def chain_histories(runs: pd.DataFrame) -> pd.DataFrame:
    """``histories`` with the net, scale and seed of each run, and ``chain_epoch``: the epoch
    counted from the start of the init chain (a fine-tune's epochs follow its parents', as
    ``vgg.spec`` chains them; NaN where a parent is not among ``runs``)."""
    h = histories(runs)
    if not len(h):
        return h.assign(net=[], train_scale=[], seed=[], chain_epoch=[])
    h = h.merge(runs[["run", "net", "train_scale", "seed"]], on="run")
    length = h.groupby("run")["epoch"].max()
    names = runs.set_index("run")
    offset = {}
    for run in length.index:
        r, before = names.loc[run], 0
        parent = row(r["net"], r["train_scale"])
        while parent is not None and parent.parent is not None:
            before += length.get(run_name(r["net"], parent.parent, int(r["seed"])), np.nan)
            parent = row(r["net"], parent.parent)
        offset[run] = before
    return h.assign(chain_epoch=h["epoch"] + h["run"].map(offset))


def fit_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per net and training scale, means over seeds at each run's last epoch: top-1 error on
    the (augmented) training crops, on the held-out slice of the training set, and the gap
    between them. The training error is the history's: the running mean over the epoch's
    batches, in train mode (dropout on), so it overstates the error of the weights at the
    epoch's end, and the gap can be negative."""
    h = chain_histories(runs)
    cols = ["net", "training S", "seeds", "chain epochs", "train (%)", "held-out (%)", "gap"]
    if not len(h):
        return pd.DataFrame(columns=cols)
    last = h.sort_values("epoch").groupby("run").tail(1)
    g = last.groupby(["net", "train_scale"], sort=False).agg(
        seeds=("seed", "nunique"), epochs=("chain_epoch", "median"),
        train=("train_top1_err", "mean"), held=("holdout_top1_err", "mean")).reset_index()
    g["gap"] = g["held"] - g["train"]
    g = by_study_order(g)
    g["train_scale"] = g["train_scale"].map(scale_label)
    g = g.rename(columns=dict(zip(["net", "train_scale", "seeds", "epochs", "train", "held", "gap"], cols)))
    return g[cols].reset_index(drop=True)


def fit_phrase(train: float, ref: float, margin: float = SAME_FIT) -> str:
    """How a net fits its training crops next to a reference net's training error ``ref``."""
    return "more closely than" if train < ref - margin else "less closely than" if train > ref + margin \
        else "as closely as"


def flat_phrase(spread: float, noise: float = HOLDOUT_NOISE) -> str:
    """What a spread of the held-out error over the last epochs says, next to its noise."""
    return ("flat within the held-out slice's noise, so more epochs at that rate would not close the gap"
            if spread <= noise else "more than the held-out slice's noise: the fine-tune had not settled")


def fit_summary(runs: pd.DataFrame, chain_net: str = "D", ref: str = "B", deep=("D", "E")) -> dict:
    """The numbers of the claims chapter's notes on fit (NaN where their runs are missing):
    ``train_<net>`` (S = 256, last epoch, mean over seeds) of ``ref`` and ``deep`` with
    ``phrase_<net>`` (``fit_phrase`` against ``ref``); the setting of the S = 256 runs (width,
    crop, n_train, epochs: medians); ``chain_net`` along its init chain: ``end_<S>_train`` and
    ``end_<S>_held`` (each run's last epoch), ``start_384`` (its first), over the fine-tune's
    epochs at its last lr ``last_lr_epochs``, ``held_min``, ``held_max`` and ``phrase_flat``
    (``flat_phrase`` of their spread); ``gap_in`` (S = 384's first epoch minus
    S = 256's end), ``gap_out`` (S = 384's end minus S = 256's end), ``lr_ft``, ``n_ft``."""
    t = fit_table(runs).set_index(["net", "training S"])
    out = {}
    for net in (ref, *deep):
        out[f"train_{net}"] = t.loc[(net, "256"), "train (%)"] if (net, "256") in t.index else np.nan
    for net in deep:
        both = not np.isnan(out[f"train_{net}"]) and not np.isnan(out[f"train_{ref}"])
        out[f"phrase_{net}"] = fit_phrase(out[f"train_{net}"], out[f"train_{ref}"]) if both else ""
    s256 = runs[runs["train_scale"] == "256"]
    for key, col in (("width", "model.width"), ("crop", "model.crop"), ("n_train", "data.n_train"),
                     ("epochs", "train.epochs")):
        out[key] = float(s256[col].median()) if col in s256 and s256[col].notna().any() else np.nan
    keys = ["end_256_train", "end_256_held", "start_384", "end_384_train", "end_384_held", "end_256-512_train",
            "end_256-512_held", "last_lr_epochs", "held_min", "held_max", "gap_in", "gap_out", "lr_ft", "n_ft"]
    out.update(dict.fromkeys(keys, np.nan), phrase_flat="")
    h = chain_histories(runs)
    d = h[h["net"] == chain_net].sort_values("epoch")
    if not {"256", "384"} <= set(d["train_scale"]):
        return out
    by_run = d.groupby("run")  # each run's first and last epoch, then the mean over seeds
    start = by_run.head(1).groupby("train_scale")["train_top1_err"].mean()
    end = by_run.tail(1).groupby("train_scale")[["train_top1_err", "holdout_top1_err"]].mean()
    for s in end.index:
        out[f"end_{s}_train"], out[f"end_{s}_held"] = end.loc[s, "train_top1_err"], end.loc[s, "holdout_top1_err"]
    ft = d[d["train_scale"] == "384"]
    held_last = ft[ft["lr"] == ft.groupby("run")["lr"].transform("min")].groupby("epoch")["holdout_top1_err"].mean()
    out.update(start_384=start.loc["384"], last_lr_epochs=len(held_last), held_min=held_last.min(),
               held_max=held_last.max(), phrase_flat=flat_phrase(held_last.max() - held_last.min()),
               gap_in=start.loc["384"] - end.loc["256", "train_top1_err"],
               gap_out=end.loc["384", "train_top1_err"] - end.loc["256", "train_top1_err"],
               lr_ft=ft.groupby("run")["lr"].first().median(), n_ft=int(ft.groupby("run")["epoch"].max().median()))
    return out


def lr_phases(history: pd.DataFrame) -> list[pd.DataFrame]:
    """A run's history split into its lr phases: runs of consecutive epochs at one lr."""
    h = history.sort_values("epoch")
    phase = (h["lr"] != h["lr"].shift()).cumsum()
    return [g for _, g in h.groupby(phase, sort=True)]


def _slope(y: pd.Series) -> float:
    """Least-squares slope of ``y`` against its position, per step; NaN with fewer than 2."""
    return float(np.polyfit(np.arange(len(y)), y.to_numpy(float), 1)[0]) if len(y) > 1 else np.nan


def convergence_table(runs: pd.DataFrame, last: int = 5) -> pd.DataFrame:
    """Did each lr phase end flat? Per run and phase: its lr and epochs, and over its last
    ``last`` epochs the least-squares slope of the held-out top-1 error and of the training
    error (points per epoch), ``noise``: two standard errors of the held-out slope were each
    epoch's error a binomial draw on the held-out slice (its images, at the window's mean
    error), and ``flat``: the held-out slope lies within that noise. With ~475 images and 5
    epochs a slope under about 1.3 points per epoch cannot be told from zero; the training
    error (~9,000 crops, a running mean over the epoch) shows smaller trends."""
    cols = ["profile", "run", "phase", "lr", "epochs", "held-out slope", "noise", "train slope", "flat"]
    rows = []
    ordered = by_study_order(runs.sort_values(["profile", "seed"], kind="stable")) if len(runs) else runs
    for i in range(len(ordered)):
        r, h = ordered.iloc[i], histories(ordered.iloc[i:i + 1])  # names repeat across profiles: one row each
        n = r.get("data.n_holdout")
        n = float(n) if n is not None and pd.notna(n) and n > 0 else 475.0  # the cpu runs' slice
        for k, g in enumerate(lr_phases(h) if len(h) else [], start=1):
            tail = g.tail(last)
            p = tail["holdout_top1_err"].mean() / 100
            x = np.arange(len(tail))
            noise = 2 * 100 * np.sqrt(p * (1 - p) / n) / np.sqrt(((x - x.mean()) ** 2).sum()) if len(tail) > 1 else np.nan
            held = _slope(tail["holdout_top1_err"])
            rows.append({"profile": r["profile"], "run": r["run"], "phase": k, "lr": float(g["lr"].iloc[0]),
                         "epochs": len(g), "held-out slope": held, "noise": noise,
                         "train slope": _slope(tail["train_top1_err"]),
                         "flat": bool(abs(held) <= noise) if len(tail) > 1 else None})
    return pd.DataFrame(rows, columns=cols)


def convergence_display(conv: pd.DataFrame) -> pd.DataFrame:
    """``convergence_table`` one row per run for the page: per lr, "slope ± noise (epochs)"
    of the held-out error over the phase's last epochs, the training error's slope in the
    last phase, and ``flat``: how many of its phases ended flat."""
    lrs = sorted(set(conv["lr"]), reverse=True)
    rows = []
    for (p, run), d in conv.groupby(["profile", "run"], sort=False):
        row = {"profile": p, "run": run, "epochs": int(d["epochs"].sum())}
        for lr in lrs:
            ph = d[d["lr"] == lr]
            row[f"lr {lr:g}"] = "–" if not len(ph) else "; ".join(
                f"{x['held-out slope']:+.2f} ± {x['noise']:.2f} ({x['epochs']})" for _, x in ph.iterrows())
        row["train slope, last lr"] = float(d["train slope"].iloc[-1])
        row["flat"] = f"{int((d['flat'] == True).sum())} of {len(d)}"  # noqa: E712
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["profile", "run", "epochs", "train slope, last lr", "flat"])


def convergence_summary(conv: pd.DataFrame) -> dict:
    """Per profile: ``phases`` measured, ``flat`` of them, ``runs``, ``runs_flat`` (every phase
    flat), the steepest held-out and training slopes of a run's last phase (``worst_held``,
    ``worst_train``), and the steepest training slope that ended a phase (``worst_train_any``),
    as {profile: {...}}."""
    out = {}
    for p, d in conv.groupby("profile"):
        last = d[d["phase"] == d.groupby("run")["phase"].transform("max")]
        per_run = d.groupby("run")["flat"].apply(lambda f: all(x is not False for x in f))
        out[p] = dict(phases=len(d), flat=int((d["flat"] == True).sum()), runs=d["run"].nunique(),  # noqa: E712
                      runs_flat=int(per_run.sum()), worst_held=float(last["held-out slope"].abs().max()),
                      worst_train=float(last["train slope"].min()), worst_train_any=float(d["train slope"].min()))
    return out


# --- dense evaluation against a crop ------------------------------------------------------

def dense_gap_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per net and training scale (means over seeds): top-1 error of dense evaluation and of
    one centre crop at the run's single test scale Q, and dense minus centre crop. The
    centre crop is the control: the same net, the same Q, no dense windows. Dense averages
    the flipped image too and the crop (Sect. 4.1's single centre crop) does not;
    ``dense_context_table`` compares the two without the flip."""
    cols = ["net", "training S", "Q", "seeds", "dense (%)", "centre crop (%)", "dense − crop"]
    ev = eval_table(runs)
    dense = ev[ev["result"].str.startswith("dense@")].assign(q=lambda e: e["result"].str[len("dense@"):])
    crop = ev[ev["result"].str.startswith("centre-crop@")].assign(q=lambda e: e["result"].str[len("centre-crop@"):])
    d = dense.merge(crop[["profile", "run", "q", "top1_err"]], on=["profile", "run", "q"], suffixes=("", "_crop"))
    if not len(d):
        return pd.DataFrame(columns=cols)
    d = d.assign(q=d["q"].astype(int), dense=d["top1_err"].astype(float), crop=d["top1_err_crop"].astype(float))
    g = d.groupby(["net", "train_scale", "q"], sort=False).agg(
        seeds=("seed", "nunique"), dense=("dense", "mean"), crop=("crop", "mean")).reset_index()
    g["gap"] = g["dense"] - g["crop"]
    g = by_study_order(g)
    g["train_scale"] = g["train_scale"].map(scale_label)
    g.columns = cols
    return g.reset_index(drop=True)


CONTEXT = {"window_in_dense": "window in dense pass (%)", "window_as_crop": "same window as crop (%)",
           "dense": "dense, no flip (%)", "top1_err": "window crops averaged (%)", "centre_crop": "centre crop (%)"}


def dense_context_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every windows-as-crops record of ``runs`` (``python -m vgg evaluate RUN -P
    windows-as-crops``), in the plan's order: top-1 error of each dense window scored in the
    dense pass and as the same region cut out as a crop, of dense evaluation and of those
    crops averaged (both without the flip), and of the centre crop."""
    cols = ["run", "Q", "images"] + list(CONTEXT.values())
    ev = eval_table(runs)
    ev = ev[ev["protocol"] == "windows-as-crops"]
    if not len(ev):
        return pd.DataFrame(columns=cols)
    ev = ev.assign(Q=ev["result"].str.split("@").str[1].astype(int), images=ev["n_images"].astype(int))
    rank = [study_rank(n, s) for n, s in zip(ev["net"], ev["train_scale"])]
    ev = ev.iloc[np.lexsort((ev["Q"].to_numpy(), rank, ev["seed"].to_numpy()))]  # seed, then plan, then Q
    return ev.rename(columns=CONTEXT)[cols].astype({c: float for c in CONTEXT.values()}).reset_index(drop=True)


def dense_context_summary(ctx: pd.DataFrame) -> dict:
    """The numbers of ``dense_context_table`` the protocol chapter states: ``n`` measurements,
    ``crop_better`` (the same region errs less as a crop than inside the dense pass),
    ``averaged_best`` (the window crops averaged beat both dense and the centre crop), and
    per Q the range of window in dense pass minus as crop, ``lo_<Q>`` and ``hi_<Q>``."""
    diff = ctx["window in dense pass (%)"] - ctx["same window as crop (%)"]
    best = ctx["window crops averaged (%)"] < ctx[["dense, no flip (%)", "centre crop (%)"]].min(axis=1)
    out = dict(n=len(ctx), crop_better=int((diff > 0).sum()), averaged_best=int(best.sum()))
    for q in (256, 384):
        sel = diff[ctx["Q"] == q]
        out[f"lo_{q}"], out[f"hi_{q}"] = (sel.min(), sel.max()) if len(sel) else (np.nan, np.nan)
    return out


def score_map_side(side: int, crop: int, pools: int = 5) -> tuple[int, int]:
    """(class-score map positions, image pixels outside every window) along one image side
    of ``side`` real pixels, for a net trained on ``crop``-pixel crops.

    Each of the ``pools`` 2x2 max-pools halves the map and drops an odd last row (floor), so
    conv5 has side // 2**pools positions; the first FC layer, a conv of crop / 2**pools,
    slides over them. The windows tile ``stride * (side // stride)`` pixels, so the last
    side - 2**pools * (side // 2**pools) pixels lie outside all of them (``vgg.evaluate.
    centre_windows`` splits them between both edges). At the paper's Q = 384 the map is 6
    positions wide; at the cpu profile's (110 px) it is 2, and at Q = 256 (73 px) one window
    of 64 px."""
    stride = 2 ** pools
    if crop % stride:
        raise ValueError(f"crop {crop} px is not a multiple of the net's stride {stride}")
    if side < crop:
        raise ValueError(f"an image side of {side} px is smaller than the crop ({crop} px)")
    cells = side // stride
    return cells - crop // stride + 1, side - stride * cells


def dense_windows(profile: str = "cpu", aspect: float = 4 / 3) -> pd.DataFrame:
    """How much of the image dense evaluation sees, per test scale Q of Tables 3-4: the
    class-score map of a 4:3 image (short x long side, ``score_map_side``) at the paper's
    sizes (where every Q is a multiple of 32, so the windows tile the whole image) and at
    ``profile``'s, with its short side in real pixels and the pixels of it outside every
    window."""
    prof = PROFILES[profile]

    def score_map(side: int, crop: int) -> str:
        return f"{score_map_side(side, crop)[0]}×{score_map_side(round(side * aspect), crop)[0]}"

    qs = sorted({q for s in ("256", "384", "256-512") for q in test_scales(s)["multi"]})
    return pd.DataFrame([{"Q": q, "paper score map": score_map(q, PAPER_CROP), f"{profile} px": prof.px(q),
                          f"{profile} score map": score_map(prof.px(q), prof.crop),
                          f"{profile} px outside": score_map_side(prof.px(q), prof.crop)[1]} for q in qs])


def last_map(crop: float) -> tuple[str, float]:
    """(the last feature map of a ``crop``-pixel crop, e.g. "2×2"; the share of its positions
    at its border, where a crop's zero padding reaches them through a 3x3 conv)."""
    if crop is None or np.isnan(crop):
        return "", np.nan
    n = int(crop) // DOWNSAMPLE
    return f"{n}×{n}", 1.0 if n <= 2 else 1 - (n - 2) ** 2 / n ** 2


def _uses_dense_at(side: Side, q: int) -> bool:
    """Does ``side`` rest on dense windows at test scale ``q`` (paper px)? A fusion through its
    members' protocol."""
    if side.net in FUSIONS:
        f = FUSIONS[side.net]
        return any(_uses_dense_at(Side(n, s, f.protocol), q) for n, s in f.members)
    name = side.protocol.split("@")[0]
    if name not in DENSE or name not in PROTOCOLS:
        return False
    return q in test_scales(side.train_scale)[PROTOCOLS[name].scales]


def dense_claims(q: int = 384, claim_list=CLAIMS) -> list[str]:
    """The claims with dense evaluation at test scale ``q`` on at least one side: dense@q, or
    multi-scale or multi-crop+dense of a net whose three test scales include q."""
    return [c.text for c in claim_list if _uses_dense_at(c.better, q) or _uses_dense_at(c.worse, q)]


__all__ = ["chain_histories", "fit_table", "fit_phrase", "flat_phrase", "fit_summary", "dense_gap_table", "dense_context_table",
           "dense_context_summary", "lr_phases", "convergence_table", "convergence_display", "convergence_summary", "score_map_side", "dense_windows", "last_map", "dense_claims", "HOLDOUT_NOISE"]
