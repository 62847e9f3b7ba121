"""Sphinx extension: the appendix pages of the runs' executed notebooks.

``_toc.yml`` includes every ``runs/<profile>/<run>/run_config.ipynb`` by a glob, so runs
appear in the book as they are made, without editing the table of contents. Each such
notebook was written by papermill from ``book/run_config.ipynb``, so all would carry the
same heading; on ``source-read`` this extension puts a title naming the run (and its state,
``vgg.rundir.RunDir.state``, unless complete) on top, shifts the notebook's own headings
below it, and turns execution off. A notebook that cannot be parsed (e.g. still being
written) becomes a one-line page instead of a build error.

The template's example command becomes this run's (``python -m vgg run NET --train-scale S
--seed N --profile P``), and where the notebook printed top-1 errors that ``metrics.json``
has since replaced (a re-evaluation), the page says so on top, with the current numbers.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from vgg.report.compute import run_date
from vgg.rundir import RunDir

RUN_DOC = re.compile(r"^runs/(?P<profile>[^/]+)/(?P<run>[^/]+)/run_config$")
HEADING = re.compile(r"^(#{1,6})(\s)", re.M)
TEMPLATE_COMMAND = re.compile(r"```[^\n]*\npapermill book/run_config\.ipynb[^`]*```")


def _command(nb: dict, profile: str) -> str | None:
    """This run's command, from the parameters papermill recorded."""
    p = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
    if not all(k in p for k in ("net", "train_scale", "seed")):
        return None
    return f"python -m vgg run {p['net']} --train-scale {p['train_scale']} --seed {p['seed']} " \
           f"--profile {p.get('profile', profile)}"


def _printed(cells: list) -> dict[str, float]:
    """{result key: top-1 error} as the notebook's results cell printed them."""
    out = {}
    for c in cells:
        if c.get("cell_type") != "code" or 'metrics["eval"]' not in _md(c.get("source", "")):
            continue
        for o in c.get("outputs", []):
            for line in _md(o.get("data", {}).get("text/plain", "")).splitlines()[1:]:
                parts = line.split()
                try:
                    out[parts[0]] = float(parts[1])
                except (IndexError, ValueError):
                    pass
    return out


def _superseded(folder: Path, cells: list) -> str:
    """A note naming the printed top-1 errors metrics.json has replaced, with the current ones."""
    metrics = RunDir(folder).metrics() or {}
    now = {k: v.get("top1_err") for k, v in metrics.get("eval", {}).items()}
    changed = {k: (v, now[k]) for k, v in _printed(cells).items() if now.get(k) is not None and abs(now[k] - v) > 0.005}
    if not changed:
        return ""
    rows = "\n".join(f"| {k} | {a:.2f} | {b:.2f} |" for k, (a, b) in changed.items())
    return ("\n**Superseded numbers.** The results table below is the one this notebook printed when it ran; "
            "`metrics.json` has since replaced these top-1 errors (the run was re-evaluated), and the book's "
            "chapters use the current ones:\n\n| result | printed top-1 (%) | current top-1 (%) |\n|---|---|---|\n"
            + rows + "\n")


def _provenance(folder: Path) -> str:
    """One line: when, from which commit, on which machine and torch build the run was made."""
    p = (RunDir(folder).metrics() or {}).get("provenance")
    if not p:
        return ""
    commit = p.get("git_commit") or "?"
    when = run_date(folder)
    return (f"\n**Provenance.** {'Finished ' + when + ' UTC, from' if when else 'From'} commit "
            f"`{commit[:10]}{'+dirty' if 'dirty' in commit else ''}`, on host `{p.get('host', '?')}` "
            f"({p.get('gpu') or p.get('cpu') or '?'}), torch {p.get('torch', '?')}.\n")


def _state(app, profile: str, run: str) -> str:
    """The run's state for its title: empty when complete (the normal case)."""
    state = RunDir(Path(app.srcdir) / "runs" / profile / run).state()
    return "" if state == "complete" else "broken metrics.json" if state == "broken" else state


def _md(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _shift(text: str, by: int) -> str:
    out, fenced = [], False
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and by:
            m = HEADING.match(line)
            if m:
                level = min(6, max(2, len(m.group(1)) + by))
                line = "#" * level + line[len(m.group(1)):]
        out.append(line)
    return "".join(out)


def retitle(app, docname: str, source: list[str]) -> None:
    m = RUN_DOC.match(docname)
    if not m:
        return
    profile, run = m["profile"], m["run"]
    state = _state(app, profile, run)
    title = f"# Run {run} ({profile}{', ' + state if state else ''})\n"
    try:
        nb = json.loads(source[0])
        cells = nb["cells"]
    except (ValueError, KeyError, TypeError):
        nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
        cells = nb["cells"]
        title += "\nThis notebook could not be read (is the run still writing it?).\n"
    levels = [len(h) for c in cells if c.get("cell_type") == "markdown"
              for h, _ in HEADING.findall(_md(c.get("source", "")))]
    by = 2 - min(levels) if levels else 0
    cmd = _command(nb, profile)
    for c in cells:
        if c.get("cell_type") == "markdown":
            c["source"] = _shift(_md(c.get("source", "")), by)
            if cmd:  # the template's example command, made this run's
                c["source"] = TEMPLATE_COMMAND.sub(f"```\n{cmd}\n```", c["source"]).replace(
                    "Run it with papermill, one command per experiment:",
                    "This run's command (it runs this notebook with papermill):")
    for c in cells:  # the page shows the parameters, the curves and the results; the rest folds away
        src, tags = _md(c.get("source", "")), c.setdefault("metadata", {}).setdefault("tags", [])
        if c.get("cell_type") != "code" or "injected-parameters" in tags:
            continue
        if "parameters" in tags or "_names_before_parameters = set(" in src:
            tags.append("remove-cell")  # the template's defaults: the injected cell has this run's
        elif "run_experiment(" in src:
            tags.append("hide-output")  # the training log, one line per epoch
        elif "RunConfig.from_dict" in src:
            tags.append("hide-input")
    made = f" It was made by `{cmd}`." if cmd else ""
    folder = Path(app.srcdir) / "runs" / profile / run
    note = _superseded(folder, cells) + _provenance(folder)
    if (folder / "run_config.first.ipynb").exists():
        note += ("\nThis notebook was executed again after the run, which it found complete (nothing was "
                 "trained or evaluated again); the first execution, with the training log, is kept as "
                 "{download}`run_config.first.ipynb <run_config.first.ipynb>`.\n")
    cells.insert(0, {"cell_type": "markdown", "id": "vgg-run-title", "metadata": {},
                     "source": title + f"\nThe executed notebook of run `{run}`, profile `{profile}`, "
                                       f"as papermill wrote it ({{download}}`the whole notebook <run_config.ipynb>`, "
                                       f"training log included); the book does not re-run it.{made}\n" + note})
    mystnb = nb.setdefault("metadata", {}).setdefault("mystnb", {})
    mystnb["execution_mode"] = "off"
    mystnb["output_stderr"] = "show"  # a run's log is shown as it was; chapters must not print to stderr
    source[0] = json.dumps(nb)


def setup(app):
    app.connect("source-read", retitle)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
