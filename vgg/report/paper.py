"""The paper's numbers: every row of Tables 3-7 (vgg/reference/vgg_paper_results.csv) and
the few numbers it gives only in its text (vgg/reference/vgg_paper_text.csv).

A ``vgg.spec.PaperRow`` or ``PaperText`` that names no number raises ``LookupError``: a
table or a claim never shows another row's number, or none, in its place.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

from ..spec import Claim, PaperRow, PaperText


@lru_cache(maxsize=1)
def _paper() -> pd.DataFrame:
    with (resources.files("vgg") / "reference" / "vgg_paper_results.csv").open() as f:
        return pd.read_csv(f, dtype={"train_scale": str, "test_scales": str, "config": str})


@lru_cache(maxsize=1)
def _text() -> pd.DataFrame:
    with (resources.files("vgg") / "reference" / "vgg_paper_text.csv").open() as f:
        return pd.read_csv(f).set_index("key")


def paper_results() -> pd.DataFrame:
    """Every number of Tables 3-7."""
    return _paper().copy()


def paper_row(row: PaperRow) -> pd.Series:
    """The one CSV row ``row`` names. ``config`` matches exactly where a row has it, else
    as a prefix (Tables 6-7's long names); none or several matching raise ``LookupError``."""
    p = _paper()
    m = p["table"] == row.table
    if row.train_scale is not None:
        m &= p["train_scale"] == row.train_scale
    if row.eval is not None:
        m &= p["eval"] == row.eval
    exact = p[m & (p["config"] == row.config)]
    rows = exact if len(exact) else p[m & p["config"].str.startswith(row.config)]
    if len(rows) != 1:
        found = "no row" if rows.empty else f"{len(rows)} rows ({', '.join(rows['config'])})"
        raise LookupError(f"{row} names {found} of vgg/reference/vgg_paper_results.csv")
    return rows.iloc[0]


def paper_text_number(key: str) -> float:
    """A number the paper gives only in its text."""
    t = _text()
    if key not in t.index:
        raise LookupError(f"no number {key!r} in vgg/reference/vgg_paper_text.csv; it has {', '.join(t.index)}")
    return float(t.loc[key, "value"])


def paper_value(row: PaperRow, column: str = "top1_val_err") -> float:
    """One number of ``row`` (NaN where the paper prints a dash)."""
    return float(paper_row(row)[column])


def paper_gain(claim: Claim) -> float:
    """The paper's top-1 gain of a claim, in points: the worse side's error minus the better
    side's, or the number its text gives."""
    if isinstance(claim.paper, PaperText):
        return paper_text_number(claim.paper.key)
    better, worse = claim.paper
    return paper_value(worse) - paper_value(better)


__all__ = ["paper_results", "paper_row", "paper_text_number", "paper_value", "paper_gain"]
