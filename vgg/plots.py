"""Figures shared by the run notebook and the book's chapters."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def training_curves(history: str | Path | pd.DataFrame, title: str = "", axes=None):
    """Loss and top-1 error (train and held-out) per epoch, with the lr divisions marked."""
    import matplotlib.pyplot as plt

    h = pd.read_csv(history) if not isinstance(history, pd.DataFrame) else history
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
