"""Sphinx extension: the appendix pages of the runs' executed notebooks.

``_toc.yml`` includes every ``runs/<profile>/<run>/run_config.ipynb`` by a glob, so runs
appear in the book as they are made, without editing the table of contents. Each such
notebook was written by papermill from ``book/run_config.ipynb``, so all would carry the
same heading; on ``source-read`` this extension puts a title naming the run (and its state,
``vgg.rundir.RunDir.state``, unless complete) on top, shifts the notebook's own headings
below it, and turns execution off. A notebook that cannot be parsed (e.g. still being
written) becomes a one-line page instead of a build error.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from vgg.rundir import RunDir

RUN_DOC = re.compile(r"^runs/(?P<profile>[^/]+)/(?P<run>[^/]+)/run_config$")
HEADING = re.compile(r"^(#{1,6})(\s)", re.M)


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
    for c in cells:
        if c.get("cell_type") == "markdown":
            c["source"] = _shift(_md(c.get("source", "")), by)
    cells.insert(0, {"cell_type": "markdown", "id": "vgg-run-title", "metadata": {},
                     "source": title + f"\nThe executed notebook of run `{run}`, profile `{profile}`, "
                                       f"as papermill wrote it; the book does not re-run it.\n"})
    mystnb = nb.setdefault("metadata", {}).setdefault("mystnb", {})
    mystnb["execution_mode"] = "off"
    mystnb["output_stderr"] = "show"  # a run's log is shown as it was; chapters must not print to stderr
    source[0] = json.dumps(nb)


def setup(app):
    app.connect("source-read", retitle)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
