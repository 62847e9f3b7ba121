"""Sphinx extension: the chapters' execution cache, kept only while what they read is unchanged.

``_config.yml`` executes the chapters in Jupyter Book's ``cache`` mode: a chapter whose code is
unchanged since the last build is not run again, its stored outputs are used. But the
chapters read more than their code: the run folders under ``runs/``, the ``vgg`` package and
the environment variables that choose what the book shows. So on ``builder-inited`` this
extension takes a digest of those (each file's path, size and modification time; the
package's sources by content) and, when it differs from the one stored beside the cache,
empties the cache: every chapter runs again, and a warm build with nothing changed runs none.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import vgg

SKIP = (".pt", ".lock", ".tmp")  # checkpoints and locks: never read by the book
ENV = ("VGG_RUNS", "VGG_BOOK_PROFILE", "VGG_DATA")
STAMP = "vgg-inputs.json"


def inputs_digest(root: Path) -> str:
    """What the chapters' outputs depend on besides their code (see the module's docstring)."""
    h = hashlib.sha256()
    runs = Path(os.environ.get("VGG_RUNS") or root / "runs")
    for f in sorted(runs.rglob("*")) if runs.is_dir() else []:
        if f.is_file() and not f.name.endswith(SKIP):
            st = f.stat()
            h.update(f"{f.relative_to(runs)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    package = Path(vgg.__file__).parent
    for f in sorted(package.rglob("*")):
        if f.is_file() and f.suffix in (".py", ".csv"):
            h.update(f.relative_to(package).as_posix().encode() + b"\0" + f.read_bytes())
    h.update(json.dumps({k: os.environ.get(k) for k in ENV}).encode())
    return h.hexdigest()


def reset_if_stale(app) -> None:
    cache = Path(app.env.mystnb_config.execution_cache_path)
    digest, stamp = inputs_digest(Path(app.srcdir)), cache / STAMP
    if stamp.exists() and json.loads(stamp.read_text()).get("digest") == digest:
        return
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    stamp.write_text(json.dumps({"digest": digest}) + "\n")


def setup(app):
    app.connect("builder-inited", reset_if_stale, priority=900)  # after myst-nb has set the cache path
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
