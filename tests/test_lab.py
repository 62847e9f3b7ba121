"""Re-running the chapters interactively: a real Jupyter server (JupyterLab, jupytext) on
localhost opens a MyST chapter as a notebook, a kernel runs it against fake runs, and the
notebook saves back as MyST Markdown."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).parent))
from fake_runs import write_fake_runs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "vgg-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(port: int, path: str, method: str = "GET", body: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a copy of the book (its root has _toc.yml, as the repository's does)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build"))
    for f in ("_toc.yml", "_config.yml"):
        shutil.copy(ROOT / f, root / f)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
                               f"--port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
                               "--allow-root"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                _api(port, "status")
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the Jupyter server did not start: " + (server.stderr.read() if server.poll()
                                                                               is not None else "timeout"))
                time.sleep(0.5)
        yield port, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    assert server.poll() is not None  # stopped


def test_a_chapter_opens_as_a_notebook_runs_in_a_kernel_and_saves_back_as_myst(lab, tmp_path, monkeypatch):
    port, root = lab
    model = _api(port, "contents/book/claims.md?type=notebook&content=1")
    assert model["type"] == "notebook"  # jupytext reads the MyST chapter as a notebook
    nb = nbformat.from_dict(model["content"])
    assert nb.metadata["kernelspec"]["name"] == "python3"  # the project's kernel, preselected
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "from vgg import report as R" in code[0].source  # the cells the book hides are there

    runs = tmp_path / "runs"
    write_fake_runs(runs, "smoke", (0, 1))
    monkeypatch.setenv("VGG_RUNS", str(runs))
    NotebookClient(nb, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(root / "book")}}).execute()
    html = [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "text/html" in o.get("data", {})]
    assert any("<table" in h and "verdict" in h and ("reproduced" in h or "inconclusive" in h
                                                      or "contradicted" in h) for h in html)
    assert not [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]

    # saved through the server, the notebook goes back to disk as MyST Markdown
    _api(port, "contents/book/claims-copy.md", "PUT", {"type": "notebook", "format": "json", "content": nb})
    text = (root / "book" / "claims-copy.md").read_text()
    assert text.startswith("---") and "```{code-cell}" in text and '"cells"' not in text
    assert "The claims, checked" in text


def test_the_lab_opens_markdown_as_notebooks_and_make_lab_starts_it():
    overrides = json.loads((ROOT / "book" / "_lab" / "overrides.json").read_text())
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}
    make = (ROOT / "Makefile").read_text()
    assert "lab: $(STAMP)" in make and "overrides.json $(LAB_SETTINGS)/overrides.json" in make
    assert "make lab" in (ROOT / "README.md").read_text()
    settings = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    if os.environ.get("CI") or settings.exists():  # installed by `make` (the stamp step)
        assert json.loads(settings.read_text()) == overrides
