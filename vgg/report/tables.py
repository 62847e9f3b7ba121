"""The paper's Tables 3-7 next to ours, each from its entry of ``vgg.spec.TABLES``.

Errors are in percent. With several seeds our number is the mean over seeds (``std`` next
to it), and its 95% interval is bootstrapped over images and seeds (two levels, see
:mod:`vgg.stats`), so it covers the training runs' spread as well as the choice of images.
A fusion (``vgg.spec.FUSIONS``) averages its members' soft-max outputs, seed by seed.
"""
from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from .. import stats
from ..evaluate import combine
from ..spec import FUSIONS, TABLES, Side
from .frame import NOT_RUN, run_probs, scale_label
from .paper import paper_results, paper_row

OURS_HELPERS = ("ours top-1", "ours top-1 std", "ci lo", "ci hi", "seeds")


# --- per-image outcomes ------------------------------------------------------------------

def check_fusable(members: list[dict], key: str) -> None:
    """Raise ``ValueError`` unless every member (``RunDir.probs()``) has outputs of result
    ``key`` for the same images in the same order, with the same labels and class order."""
    if not members:
        raise ValueError("a fusion needs at least one member run")

    def name(m, i):
        return m.get("path", f"member {i}")

    first = members[0]
    for i, m in enumerate(members):
        if key not in m.get("probs", {}):
            raise ValueError(f"{name(m, i)} has no {key!r} outputs; it has {sorted(m.get('probs', {}))}")
    for i, m in enumerate(members[1:], start=1):
        if list(m["classes"]) != list(first["classes"]):
            raise ValueError(f"{name(m, i)} has classes {list(m['classes'])} but {name(first, 0)} has "
                             f"{list(first['classes'])}: fusion needs the same class order")
        if list(m["ids"]) != list(first["ids"]):
            a, b = list(first["ids"]), list(m["ids"])
            why = (f"{len(b)} images vs {len(a)}" if len(a) != len(b) else
                   "the same images in another order" if sorted(a) == sorted(b) else
                   f"{len(set(a) ^ set(b))} image ids differ")
            raise ValueError(f"{name(m, i)} was evaluated on different images than {name(first, 0)} ({why}); "
                             f"fusion needs the same images in the same order")
        if not np.array_equal(np.asarray(m["labels"]), np.asarray(first["labels"])):
            raise ValueError(f"{name(m, i)} has other labels for the same image ids than {name(first, 0)}")


def _probs_of(runs: pd.DataFrame, net: str, train_scale: str, seed: int) -> dict | None:
    sel = runs[(runs["net"] == net) & (runs["train_scale"] == train_scale) & (runs["seed"] == seed)]
    return run_probs(sel.iloc[0]["path"]) if len(sel) else None


def _members(runs: pd.DataFrame, fusion, seed: int) -> list[dict] | None:
    """A fusion's member runs of one seed (``RunDir.probs()``), or None where one is
    missing or they are not fusable."""
    members = [_probs_of(runs, n, s, seed) for n, s in fusion.members]
    if any(m is None for m in members):
        return None
    try:
        check_fusable(members, fusion.protocol)
    except ValueError:
        return None
    return members


def _best(members: list[dict], key: str) -> int:
    """The index of the member with the lowest top-1 error on ``key`` (the first on a tie)."""
    errs = [stats.error_percent(stats.topk_correct(np.asarray(m["probs"][key], dtype=np.float32), m["labels"], 1))
            for m in members]
    return int(np.argmin(errs))


def best_members(runs: pd.DataFrame, side: Side) -> dict[int, str]:
    """{seed: the (net, S) of the fusion's best member, as "net/S"} of a ``member="best"`` side
    (decided per seed, on top-1 error over the same validation images)."""
    fusion, out = FUSIONS[side.net], {}
    for seed in sorted(set(runs["seed"])) if len(runs) else []:
        members = _members(runs, fusion, seed)
        if members is not None:
            n, s = fusion.members[_best(members, fusion.protocol)]
            out[seed] = f"{n}/{scale_label(s)}"
    return out


def correct_by_seed(runs: pd.DataFrame, side: Side, k: int = 1) -> dict[int, np.ndarray]:
    """{seed: per-image top-k correctness} of one ``Side``; a fusion's members come from the
    same seed, and a seed where one is missing or not fusable is left out. The best member
    of a fusion (``member="best"``) is chosen per seed, by top-1 error, among members that
    are all there: each seed stands for one run of the paper's experiment."""
    if side.member not in ("", "best") or (side.member and side.net not in FUSIONS):
        raise ValueError(f"{side}: member={side.member!r} is not a side; "
                         f"'best' names a fusion's (FUSIONS key) best member")
    out = {}
    for seed in sorted(set(runs["seed"])) if len(runs) else []:
        if side.net in FUSIONS:
            fusion = FUSIONS[side.net]
            members = _members(runs, fusion, seed)
            if members is None:
                continue
            if side.member == "best":
                best = members[_best(members, fusion.protocol)]
                probs, labels = best["probs"][fusion.protocol], best["labels"]
            else:
                probs = combine(*[m["probs"][fusion.protocol] for m in members])
                labels = members[0]["labels"]
        else:
            pr = _probs_of(runs, side.net, side.train_scale, seed)
            if pr is None or side.protocol not in pr["probs"]:
                continue
            probs, labels = pr["probs"][side.protocol], pr["labels"]
        kk = min(k, np.asarray(probs).shape[1])
        out[seed] = stats.topk_correct(np.asarray(probs, dtype=np.float32), labels, kk)
    return out


def same_images(*by_seed: dict) -> list[int]:
    """The seeds present in every {seed: per-image outcomes} given, scored on the same number
    of images on every side, and on the most common such number (more images on a tie).
    The bootstraps pair seeds image by image; a run scored on another validation set (a
    stale one, say; the status page lists those) is left out rather than mis-paired."""
    seeds = sorted(set.intersection(*(set(d) for d in by_seed))) if by_seed else []
    sizes = {s: {len(d[s]) for d in by_seed} for s in seeds}
    seeds = [s for s in seeds if len(sizes[s]) == 1]
    if not seeds:
        return []
    counts: dict[int, int] = {}
    for s in seeds:
        counts[min(sizes[s])] = counts.get(min(sizes[s]), 0) + 1
    common = max(counts, key=lambda n: (counts[n], n))
    return [s for s in seeds if min(sizes[s]) == common]


def summarize(runs: pd.DataFrame, side: Side) -> dict:
    """Our top-1/top-5 error of one ``Side``: mean over seeds, std, a 95% CI of top-1 over
    images and seeds, and the number of seeds."""
    c1, c5 = correct_by_seed(runs, side, 1), correct_by_seed(runs, side, 5)
    seeds = same_images(c1)
    if not seeds:
        return dict(top1=np.nan, top1_std=np.nan, top1_lo=np.nan, top1_hi=np.nan, top5=np.nan, seeds=0)
    m1, s1 = stats.mean_std([stats.error_percent(c1[s]) for s in seeds])
    _, lo, hi = stats.bootstrap_ci(np.stack([c1[s] for s in seeds]))  # [seeds, images]
    top5 = stats.mean_std([stats.error_percent(c5[s]) for s in seeds])[0]
    return dict(top1=m1, top1_std=s1, top1_lo=lo, top1_hi=hi, top5=top5, seeds=len(seeds))


def ours_text(s: dict) -> str:
    """``mean ± std [lo, hi]`` of ``summarize`` (no std with one seed), or *not run yet*."""
    if not s["seeds"]:
        return NOT_RUN
    txt = f"{s['top1']:.1f}"
    if s["seeds"] > 1:
        txt += f" ± {s['top1_std']:.1f}"
    return txt + f" [{s['top1_lo']:.1f}, {s['top1_hi']:.1f}]"


# --- the tables ----------------------------------------------------------------------------

def table(n: int, runs: pd.DataFrame) -> pd.DataFrame:
    """Table ``n`` of ``vgg.spec.TABLES``: per row its label columns, the paper's top-1 and
    top-5 (only in a table with paper rows; NaN where the row has none), and ours."""
    spec = TABLES[n]
    with_paper = any(r.paper is not None for r in spec.rows)
    out = []
    for r in spec.rows:
        row = dict(r.label)
        if with_paper:
            p = paper_row(r.paper) if r.paper is not None else None
            row["paper top-1"] = float(p["top1_val_err"]) if p is not None else np.nan
            row["paper top-5"] = float(p["top5_val_err"]) if p is not None else np.nan
        s = summarize(runs, r.ours)
        row.update({"ours top-1": s["top1"], "ours top-5": s["top5"], "ours top-1 std": s["top1_std"],
                    "ci lo": s["top1_lo"], "ci hi": s["top1_hi"], "seeds": s["seeds"],
                    "ours top-1 (95% CI)": ours_text(s)})
        out.append(row)
    return pd.DataFrame(out)


def rank_summary(t: pd.DataFrame, label: list[str]) -> dict:
    """How our rows of a ``table`` rank against the paper's, by top-1 error, over the rows
    with both numbers: ``n`` rows, ``pairs`` of rows the paper orders (ties left out),
    ``same`` of them in the same order in ours, ``paper_best`` (its label columns joined)
    and ``rank``, its place among ours (1 = our best); NaN/'' where there are none."""
    d = t[t["paper top-1"].notna() & t["ours top-1"].notna()].reset_index(drop=True)
    out = dict(n=len(d), pairs=0, same=0, paper_best="", rank=np.nan)
    if len(d) < 2:
        return out
    p, o = d["paper top-1"].to_numpy(), d["ours top-1"].to_numpy()
    for i in range(len(d)):
        for j in range(i + 1, len(d)):
            if p[i] != p[j]:
                out["pairs"] += 1
                out["same"] += int(np.sign(p[i] - p[j]) == np.sign(o[i] - o[j]))
    best = int(np.argmin(p))
    out["paper_best"] = " ".join(str(d.loc[best, c]) for c in label)
    out["rank"] = int((o < o[best]).sum()) + 1
    return out


DATASET = "Imagenette val (10 classes), not ILSVRC"


def table7(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the paper's Table 7 as printed, our rows of ``TABLES[7]`` on Imagenette, kept apart)."""
    p = paper_results()
    t = p[p["table"] == 7][["config", "top1_val_err", "top5_val_err", "top5_test_err"]]
    t = t.rename(columns={"config": "method", "top1_val_err": "top-1 val", "top5_val_err": "top-5 val",
                          "top5_test_err": "top-5 test"}).reset_index(drop=True)
    ours = table(7, runs)
    ours.insert(1, "dataset", DATASET)
    return t, ours


# --- display ---------------------------------------------------------------------------------

def display_table(df: pd.DataFrame, hide=OURS_HELPERS) -> pd.DataFrame:
    """Drop the numeric helper columns and write NaN as '–' (paper) for printing; each
    metric's paper and ours columns side by side (top-1 pair, then top-5 pair)."""
    out = df.drop(columns=[c for c in hide if c in df.columns])
    order = ["paper top-1", "ours top-1 (95% CI)", "paper top-5", "ours top-5"]
    out = out[[c for c in out.columns if c not in order] + [c for c in order if c in out.columns]]
    for c in out.columns:
        if c.startswith("paper"):
            out[c] = out[c].map(lambda x: "–" if pd.isna(x) else f"{x:.1f}")
        elif c == "ours top-5":
            out[c] = out[c].map(lambda x: NOT_RUN if pd.isna(x) else f"{x:.1f}")
    return out


class Table(Styler):
    """A pandas Styler whose cells carry their column's name (``data-label``): on a narrow
    screen book/_static/vgg.css stacks each row into a card of "column: value" lines
    instead of a table wider than the phone."""

    def _repr_html_(self) -> str:
        names = [html.escape(" ".join(map(str, c)) if isinstance(c, tuple) else str(c), quote=True)
                 for c in self.data.columns]
        return re.sub(r'(<td [^>]*class="data row\d+ col(\d+)")',
                      lambda m: f'{m.group(1)} data-label="{names[int(m.group(2))]}"', super()._repr_html_())


def show(df: pd.DataFrame, digits: int = 3, formats: dict[str, str] | None = None, wrap: bool = False):
    """A table for the page: no row index, floats to ``digits`` significant digits (or a
    column's own format spec in ``formats``, e.g. {"train (h)": ".2f"}), NaN as a dash.
    Cells stay on one line (class vgg-nowrap, book/_static/vgg.css) unless ``wrap``: for
    tables of sentences. Class vgg-table: stacked into cards on a narrow screen."""
    floats = df.select_dtypes("float").columns
    specs = {c: f".{digits}g" for c in floats} | (formats or {})
    style = Table(df).hide(axis="index").format(
        {c: (lambda x, f=f: "–" if pd.isna(x) else fmt(x, f)) for c, f in specs.items()})  # fmt: no "-0.0"
    return style.set_table_attributes('class="vgg-table"' if wrap else 'class="vgg-table vgg-nowrap"')


def fmt(x, spec: str = ".1f", unit: str = "") -> str:
    """A number for a sentence of a chapter (``glue``): formatted by ``spec``, with ``unit``,
    a zero without a sign; *not run yet* where it is missing."""
    if x is None or pd.isna(x):
        return NOT_RUN
    s = format(x, spec)
    if s[:1] in "+-" and float(s) == 0:  # no "-0.0": a sign on a zero says nothing
        s = s[1:]
    return s + unit


__all__ = ["table", "table7", "rank_summary", "summarize", "correct_by_seed", "best_members", "same_images", "check_fusable", "ours_text",
           "display_table", "show", "fmt", "DATASET"]
