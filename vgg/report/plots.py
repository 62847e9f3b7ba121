"""Figures of the book's chapters and of the run notebook (matplotlib, imported lazily)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..rundir import RunDir
from .diagnostics import chain_histories
from .frame import NOT_RUN, histories, scale_label

CHAIN_SCALES = ("256", "384", "256-512")  # the paper's initialisation chain (Sect. 3.1)


def _legend_below(ax, fig, ncol: int) -> None:
    below_xlabel = -0.6 / max(fig.get_figheight() - 1.0, 0.5)  # 0.6 inch under the axes
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, below_xlabel), ncol=ncol, fontsize=8, frameon=False)


def _mark_not_run(ax, y, have) -> None:
    """'not run yet' just right of the axes on each row without our number."""
    for yi, ok in zip(y, have):
        if not ok:
            ax.annotate(NOT_RUN, (1.01, yi), xycoords=("axes fraction", "data"), ha="left", va="center",
                        fontsize=8, color="grey", annotation_clip=False)


PROFILE_COLOURS = ("tab:red", "tab:green", "tab:purple")


def dot_plot(df: pd.DataFrame, label: str, title: str, ax=None):
    """Paper's top-1 (open) and ours (filled, 95% CI bar) per row of a ``table``; of a
    ``table_by_profile``, one colour per profile, side by side in each row. Returns the figure."""
    import matplotlib.pyplot as plt

    n = len(df)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.38 * n + 1.2))
    else:
        fig = ax.figure
    y = np.arange(n)[::-1]
    ax.plot(df["paper top-1"], y, "o", mfc="none", color="tab:blue", label="paper (ILSVRC val)")
    profiles = [c[:-len(": ours top-1")] for c in df.columns if c.endswith(": ours top-1")]
    series = [(f"{p}: ", f"ours, {p} (95% CI)") for p in profiles] or [("", "ours (95% CI)")]
    have_any = np.zeros(n, bool)
    for k, (pre, name) in enumerate(series):
        have = (df[f"{pre}seeds"] > 0).to_numpy() if f"{pre}seeds" in df else np.zeros(n, bool)
        have_any |= have
        if have.any():
            d, off = df[have], (0.0 if len(series) == 1 else 0.18 - 0.36 * k / (len(series) - 1))
            mid, lo, hi = d[f"{pre}ours top-1"], d[f"{pre}ci lo"], d[f"{pre}ci hi"]
            ax.errorbar(mid, y[have] + off, xerr=[mid - lo, hi - mid], fmt="o", ms=4 if len(series) > 1 else 6,
                        color=PROFILE_COLOURS[k % len(PROFILE_COLOURS)], capsize=3, label=name)
    _mark_not_run(ax, y, have_any)
    ax.set_yticks(y, df[label])
    ax.set_xlabel("top-1 error (%)")
    ax.set_title(title)
    _legend_below(ax, fig, 1 + len(series))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def profile_curves(runs: dict[str, pd.DataFrame], nets=("A", "B", "C", "D", "E"), train_scale: str = "256"):
    """One panel per net at ``train_scale``: held-out top-1 error by epoch at each profile
    (one colour each, seeds overlaid), so a profile's learning is seen beside another's."""
    import matplotlib.pyplot as plt

    have = [n for n in nets if any(len(r) and ((r["net"] == n) & (r["train_scale"] == train_scale)).any()
                                   for r in runs.values())]
    ncols = min(max(len(have), 1), 3)
    nrows = -(-max(len(have), 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols + 0.6, 2.4 * nrows), sharey=True, squeeze=False)
    for ax, net in zip(axes.flat, have):
        for k, (p, r) in enumerate(runs.items()):
            sel = r[(r["net"] == net) & (r["train_scale"] == train_scale)] if len(r) else r
            h = histories(sel) if len(sel) else pd.DataFrame()
            for j, (_, one) in enumerate(h.groupby("run") if len(h) else []):
                ax.plot(one["epoch"], one["holdout_top1_err"], color=PROFILE_COLOURS[k % len(PROFILE_COLOURS)],
                        lw=1.0, alpha=0.8, label=p if j == 0 else None)
        ax.set_title(f"{net}, S = {scale_label(train_scale)}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(have):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("held-out top-1 error (%)", fontsize=8)
    if have:  # no runs: an empty panel, no legend (matplotlib would warn)
        axes[0, 0].legend(fontsize=7, frameon=False)
    else:
        _mark_not_run(axes[0, 0], [0.5], [False])
    fig.tight_layout()
    return fig


def claims_plot(c: pd.DataFrame):
    """Gain per claim: paper (open) and ours with CI (filled), each seed's gain as a tick."""
    import matplotlib.pyplot as plt

    n = len(c)
    fig, ax = plt.subplots(figsize=(7, 0.4 * n + 1.2))
    y = np.arange(n)[::-1]
    ax.axvline(0, color="k", lw=0.8)
    ax.plot(c["paper gain"], y, "o", mfc="none", color="tab:blue", label="paper")
    have = (c["seeds"] > 0).to_numpy()
    if have.any():
        d = c[have]
        ax.errorbar(d["ours gain"], y[have], xerr=[d["ours gain"] - d["ci lo"], d["ci hi"] - d["ours gain"]],
                    fmt="o", color="tab:red", capsize=3, label="ours (95% paired CI)")
        multi = [(yi, g) for yi, gains in zip(y[have], d["seed gains"]) if len(gains) > 1 for g in gains]
        if multi:
            yy, gg = zip(*multi)
            ax.plot(gg, np.asarray(yy) - 0.22, "|", color="tab:red", alpha=0.6, ms=7, label="ours, each seed")
    _mark_not_run(ax, y, have)
    ax.set_yticks(y, c["claim"])
    ax.set_xlabel("top-1 gain of the claimed-better side (points)")
    _legend_below(ax, fig, 3)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


SEED_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange")


def plot_histories(runs: pd.DataFrame, ncols: int = 4):
    """One panel per net and training scale, the seeds overlaid (one colour each): held-out
    top-1 error (solid) and training-crop error (thin), by epoch along the init chain, so a
    fine-tune continues its parent's curve (drawn faint before it); lr drops dotted."""
    import matplotlib.pyplot as plt

    h = chain_histories(runs)
    keys = list(dict.fromkeys(zip(h["net"], h["train_scale"])))
    nrows = max(1, -(-len(keys) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.5 * nrows), sharey=True, squeeze=False)
    for ax, (net, scale) in zip(axes.flat, keys):
        d = h[(h["net"] == net) & (h["train_scale"] == scale)]
        for k, (seed, one) in enumerate(d.groupby("seed")):
            colour = SEED_COLOURS[k % len(SEED_COLOURS)]
            before = h[(h["net"] == net) & (h["seed"] == seed) & (h["chain_epoch"] < one["chain_epoch"].min())]
            before = before[before["train_scale"] != scale]
            if len(before):  # the parent's run(s), which this one continues
                ax.plot(before["chain_epoch"], before["holdout_top1_err"], color=colour, lw=0.8, alpha=0.3)
            ax.plot(one["chain_epoch"], one["holdout_top1_err"], color=colour, lw=1.4, label=f"seed {seed}")
            ax.plot(one["chain_epoch"], one["train_top1_err"], color=colour, lw=0.7, alpha=0.6)
            lr = one["lr"].to_numpy()
            for e in one["chain_epoch"].to_numpy()[1:][lr[1:] < lr[:-1]]:
                ax.axvline(e - 0.5, ls=":", lw=0.8, color=colour)
        ax.set_title(f"{net}, S = {scale_label(scale)}", fontsize=9)
        ax.set_xlabel("epoch (from the chain's start)", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("top-1 error (%)", fontsize=8)
    axes[0, 0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def fit_plot(runs: pd.DataFrame, depth_nets=("A", "B", "C", "D", "E"), chain_net: str = "D"):
    """Two panels, mean over seeds of the training-crop top-1 error by epoch: (left) the
    S = 256 nets of Table 3 side by side; (right) ``chain_net`` along its init chain,
    S = 256, then fine-tuned at S = 384, then at jittered S (held-out error dashed)."""
    import matplotlib.pyplot as plt

    h = chain_histories(runs)
    fig, (ax_d, ax_s) = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for net in depth_nets:
        d = h[(h["net"] == net) & (h["train_scale"] == "256")]
        if len(d):
            m = d.groupby("epoch")["train_top1_err"].mean()
            ax_d.plot(m.index, m.to_numpy(), lw=1.3, label=f"{net} ({d['seed'].nunique()} seed(s))")
    ax_d.set_title("Depth: training-crop error at S = 256", fontsize=10)
    for scale, colour in zip(CHAIN_SCALES, ("tab:blue", "tab:orange", "tab:green")):
        d = h[(h["net"] == chain_net) & (h["train_scale"] == scale)]
        if len(d):
            m = d.groupby("chain_epoch")[["train_top1_err", "holdout_top1_err"]].mean()
            ax_s.plot(m.index, m["train_top1_err"], color=colour, lw=1.3, label=f"S = {scale_label(scale)}")
            ax_s.plot(m.index, m["holdout_top1_err"], color=colour, lw=1, ls="--")
    ax_s.set_title(f"Scale: {chain_net} along its init chain (dashed: held-out)", fontsize=10)
    for ax in (ax_d, ax_s):
        ax.set_xlabel("epoch (a fine-tune continues its parent's count)" if ax is ax_s else "epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, NOT_RUN, transform=ax.transAxes, ha="center", color="grey")
    ax_d.set_ylabel("top-1 error (%)")
    fig.tight_layout()
    return fig


def training_curves(history: str | os.PathLike | pd.DataFrame, title: str = "", axes=None):
    """Loss and top-1 error (train and held-out) per epoch, with the lr divisions marked.
    ``history``: a frame, a run folder, or its history.csv (read through ``RunDir``)."""
    import matplotlib.pyplot as plt

    if isinstance(history, pd.DataFrame):
        h = history
    else:
        path = Path(history)
        h = pd.DataFrame(RunDir(path.parent if path.name == RunDir.HISTORY else path).history())
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    ax_loss, ax_err = axes
    ax_loss.plot(h["epoch"], h["train_loss"], marker=".", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_err.plot(h["epoch"], h["train_top1_err"], marker=".", label="train top-1")
    ax_err.plot(h["epoch"], h["holdout_top1_err"], marker=".", label="held-out top-1")
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("error (%)")
    for e in h["epoch"][h["lr"].diff() < 0]:  # the epochs that start with a smaller lr
        for ax in axes:
            ax.axvline(e - 0.5, color="grey", lw=0.8, ls=":")
    ax_err.legend(frameon=False)
    if title:
        ax_loss.set_title(title, loc="left")
    return axes


__all__ = ["dot_plot", "profile_curves", "claims_plot", "plot_histories", "fit_plot", "training_curves"]
