"""The runs as frames: every run folder read through ``vgg.rundir.RunDir``, nothing else.

A run is ``runs/<profile>/<run>/``. Only folders whose ``RunDir.state()`` is *complete* are
results; an unreadable ``metrics.json`` is *broken* and is reported by name, never raised.
``load_runs`` gives one row per complete run (metrics.json flattened, its protocol records
from ``RunDir.results()`` as ``eval.<result key>.<field>``); ``eval_table`` the same records
in long form, one row per (run, result key). A result of an older protocol has a name of
its own there (``dense-topleft@256``), so a table asking for ``dense@256`` does not see it.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import ROOT
from ..rundir import BrokenRun, RunDir, scan
from ..spec import RUNS, SEEDS, plan
from ..spec import scale_label  # the paper's [256;512], made once (vgg.spec)
from ..train import HISTORY_COLUMNS as TRAIN_HISTORY_COLUMNS

NOT_RUN = "not run yet"
RUN_COLUMNS = ["run", "net", "train_scale", "seed", "profile", "path"]
HISTORY_COLUMNS = ["run"] + TRAIN_HISTORY_COLUMNS
# the fields of a protocol record that the long frame keeps (windows-as-crops adds the last five)
RECORD_FIELDS = ["top1_err", "top5_err", "scales", "n_images", "seconds", "images_per_s",
                 "window_in_dense", "window_as_crop", "dense", "centre_crop", "n_windows"]


# --- where things are ------------------------------------------------------------------

def book_root(start: str | os.PathLike | None = None) -> Path:
    """The book's root: the first folder at or above ``start`` (default: cwd) holding
    ``_toc.yml``; the repository otherwise. Chapters run in ``book/``, so a copy of the
    book reads its own ``runs/``."""
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").is_file():
            return d
    return ROOT


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """``runs_dir``, else ``$VGG_RUNS``, else ``<book root>/runs``."""
    if runs_dir is not None:
        return Path(runs_dir)
    if os.environ.get("VGG_RUNS"):
        return Path(os.environ["VGG_RUNS"])
    return book_root() / "runs"


# --- every folder and its state ----------------------------------------------------------

def scan_runs(runs_dir=None) -> pd.DataFrame:
    """Every run folder of every profile with its ``RunDir.state()`` (missing, running,
    partial, failed, complete, broken). Columns: profile, run, state, path, detail (a
    failed run's error, a broken one's reason)."""
    root = runs_root(runs_dir)
    rows = []
    for rd in scan(root):
        state, detail = rd.state(), ""
        if state == "failed":
            m = rd.metrics() or {}
            detail = str(m.get("error", m.get("status", "")))[:200]
        elif state == "broken":
            try:
                rd.metrics()
            except BrokenRun as err:
                detail = str(err)[:200]
        path = rd.path.relative_to(root.parent) if root.parent in rd.path.parents else rd.path
        rows.append(dict(profile=rd.path.parent.name, run=rd.name, state=state, path=str(path), detail=detail))
    return pd.DataFrame(rows, columns=["profile", "run", "state", "path", "detail"])


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_runs(profile: str | None = None, runs_dir=None) -> tuple[pd.DataFrame, list[str]]:
    """(one row per complete run of ``profile`` (None: every profile), the broken runs'
    metrics.json paths, as ``<profile>/<run>/metrics.json``)."""
    rows, broken = [], []
    for rd in scan(runs_root(runs_dir)):
        prof = rd.path.parent.name
        if profile is not None and prof != profile:
            continue
        state = rd.state()
        if state == "broken":
            broken.append(str(Path(prof) / rd.name / RunDir.METRICS))
        if state != "complete":
            continue
        m = rd.metrics()
        row = _flatten({k: v for k, v in m.items() if k != "eval"})
        row.update(_flatten({"eval": rd.results()}))
        row.update(run=rd.name, profile=prof, path=str(rd.path), train_scale=str(m["train_scale"]),
                   seed=int(m["seed"]))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=RUN_COLUMNS)
    first = [c for c in RUN_COLUMNS if c in df.columns]
    df = df[first + [c for c in df.columns if c not in first]]
    return df.sort_values(["profile", "net", "train_scale", "seed"]).reset_index(drop=True), broken


def eval_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Long form, one row per (run, result key): run, net, train_scale, seed, profile,
    result (the key, e.g. ``dense@384``), protocol (its name in ``vgg.evaluate.PROTOCOLS``,
    e.g. ``dense``), then ``RECORD_FIELDS`` (NaN where a record has no such field)."""
    cols = RUN_COLUMNS[:5] + ["result", "protocol"] + RECORD_FIELDS
    rows = []
    for _, r in runs.iterrows():
        keys = sorted({c[len("eval."):-len(".top1_err")] for c in r.index
                       if c.startswith("eval.") and c.endswith(".top1_err") and pd.notna(r[c])})
        for key in keys:
            row = {k: r[k] for k in RUN_COLUMNS[:5]}
            proto = r.get(f"eval.{key}.protocol")
            row.update(result=key, protocol=proto if isinstance(proto, str) else key.split("@")[0])
            row.update({k: r.get(f"eval.{key}.{k}", np.nan) for k in RECORD_FIELDS})
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# --- the profile the book shows ------------------------------------------------------------

HEADLINE = "cpu128"  # the book's profile once its study is complete (issue 19); "cpu" until then


def study_complete(runs: pd.DataFrame, profile: str, seeds: int = SEEDS) -> bool:
    """Are all planned runs of ``profile`` for ``seeds`` seeds among ``runs`` (complete runs)?"""
    have = set(runs.loc[runs["profile"] == profile, "run"]) if len(runs) else set()
    return all(p.name in have for p in plan(seeds, profile=profile))


def book_profile(runs_dir=None, runs: pd.DataFrame | None = None) -> str:
    """The profile the book shows: ``$VGG_BOOK_PROFILE``, else ``HEADLINE`` once all its planned
    runs of every seed are complete, else cpu; with no complete cpu runs but some complete
    smoke runs, and no profile asked for, smoke. ``runs``: every profile's runs, when read."""
    runs = load_runs(runs_dir=runs_dir)[0] if runs is None else runs
    wanted = os.environ.get("VGG_BOOK_PROFILE") or (HEADLINE if study_complete(runs, HEADLINE) else "cpu")
    have = set(runs["profile"]) if len(runs) else set()
    if wanted not in have and wanted == "cpu" and "smoke" in have and "VGG_BOOK_PROFILE" not in os.environ:
        return "smoke"
    return wanted


def book_runs(runs_dir=None) -> tuple[pd.DataFrame, str, list[str]]:
    """(complete runs of the profile the book shows, that profile, broken metrics.json paths
    of every profile)."""
    every, broken = load_runs(None, runs_dir)  # every folder read once
    profile = book_profile(runs_dir, every)
    runs = every[every["profile"] == profile].reset_index(drop=True) if len(every) else every
    return runs, profile, broken


# --- per-run files, through RunDir -----------------------------------------------------------

def histories(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's history (``RunDir.history()``), stacked, with a ``run`` column first."""
    frames = []
    for _, r in runs.iterrows():
        try:
            rows = RunDir(r["path"]).history()
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a history being written
        if rows:
            frames.append(pd.DataFrame(rows).assign(run=r["run"]))
    if not frames:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    h = pd.concat(frames, ignore_index=True)
    return h[["run"] + [c for c in h.columns if c != "run"]]


@lru_cache(maxsize=256)
def _probs_cached(path: str, mtime: float) -> dict | None:
    return RunDir(path).probs()


def run_probs(run_path: str | os.PathLike) -> dict | None:
    """``RunDir.probs()`` of a run folder (cached while its probs.npz is unchanged), or None."""
    rd = RunDir(run_path)
    try:
        return _probs_cached(str(rd.path), (rd.path / RunDir.PROBS).stat().st_mtime)
    except (OSError, ValueError, KeyError, BrokenRun):
        return None


_STUDY_ORDER: dict[tuple[str, str], int] = {}
for _i, _r in enumerate(RUNS):
    _STUDY_ORDER.setdefault((_r.net, _r.train_scale), _i)


def study_rank(net: str, train_scale: str) -> int:
    """Where (net, training scale) comes in the plan (``vgg.spec.RUNS``), for sorting tables
    the way the paper's tables run; unknown pairs last."""
    return _STUDY_ORDER.get((net, train_scale), len(_STUDY_ORDER))


def by_study_order(df: pd.DataFrame, net: str = "net", scale: str = "train_scale") -> pd.DataFrame:
    """``df`` sorted stably into the plan's order of (net, training scale)."""
    return df.iloc[np.argsort([study_rank(*k) for k in zip(df[net], df[scale])], kind="stable")]


__all__ = ["NOT_RUN", "book_root", "runs_root", "scan_runs", "load_runs", "eval_table", "book_profile",
           "HEADLINE", "study_complete", "book_runs", "histories", "run_probs", "study_rank", "by_study_order", "scale_label"]
