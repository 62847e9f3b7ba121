"""A page of the built book as a reader's browser lays it out (Debian's chromium, headless).

``probe(page, width)`` opens a copy of ``page`` with a small script added that, once the page
has loaded at that width, measures what a reader would see go wrong: a table or figure wider
than the text column (cut off, or only visible by scrolling it sideways), an image that did
not load, a Python traceback, "nan" in the text. ``screenshot`` saves the first screen.

Headless chromium will not make a window narrower than 500 px, so a page is always shown in
an iframe of the asked width (a phone's 420 px included) inside a wrapper page, both served
over a local HTTP server from the book's folder (same origin: the page's script reports to
the wrapper, whose DOM chromium dumps). ``make test`` installs chromium when it is missing.
"""
from __future__ import annotations

import functools
import html
import json
import re
import shutil
import subprocess
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
         "--no-first-run", "--virtual-time-budget=5000"]

PROBE = r"""<script>
window.addEventListener('load', () => {
  const main = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const column = main.clientWidth;
  const out = {viewport: window.innerWidth, column: column, overflow: [], broken: [], traceback: false, nan: []};
  for (const el of main.querySelectorAll('table, img, figure')) {
    if (!el.offsetParent) continue;  // hidden (a closed dropdown): not on the screen
    const w = Math.max(el.scrollWidth, el.getBoundingClientRect().width);
    if (w > column + 2)
      out.overflow.push(`${el.tagName.toLowerCase()} ${Math.round(w)} px in a ${column} px column: ` +
                        (el.innerText || el.getAttribute('alt') || el.getAttribute('src') || '').trim().slice(0, 60));
  }
  for (const img of document.images)
    if (!img.complete || img.naturalWidth === 0) out.broken.push(img.getAttribute('src'));
  const text = main.innerText;
  out.traceback = /Traceback \(most recent call last\)/.test(text);
  out.nan = (text.match(/.{0,30}\bnan\b.{0,30}/gi) || []).slice(0, 5);
  const pre = window.parent.document.createElement('pre');
  pre.id = '__probe__';
  pre.textContent = JSON.stringify(out);
  window.parent.document.body.appendChild(pre);
});
</script>"""

WRAPPER = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>body {{margin: 0}} iframe {{border: 0}}</style></head>
<body><iframe src="{src}" width="{width}" height="{height}"></iframe></body></html>"""


def available() -> bool:
    return CHROMIUM is not None


@contextmanager
def serve(root: Path):
    """An HTTP server for ``root`` on a free local port; yields its base URL."""
    handler = functools.partial(type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                                directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _open(page: Path, root: Path, width: int, height: int, extra: list[str], script: str = ""):
    """Run chromium on a wrapper page around a copy of ``page`` (``script`` added to it)."""
    page, root = Path(page).resolve(), Path(root).resolve()
    copy = page.with_name(f"__probe__{page.name}")  # beside it: the page's links still resolve
    wrapper = page.with_name(f"__wrap__{page.name}")
    copy.write_text(page.read_text().replace("</body>", script + "</body>"))
    wrapper.write_text(WRAPPER.format(src=copy.name, width=width, height=height))
    try:
        with serve(root) as url:
            return subprocess.run([CHROMIUM, *FLAGS, f"--window-size={max(width, 500)},{height}", *extra,
                                   f"{url}/{wrapper.relative_to(root).as_posix()}"],
                                  capture_output=True, text=True, timeout=120)
    finally:
        copy.unlink()
        wrapper.unlink()


def probe(page: Path, width: int, root: Path | None = None, height: int = 1000) -> dict:
    """What goes wrong on ``page`` (a file under ``root``, the built book's html folder; by
    default its parent's parent) at ``width`` px: {viewport, column, overflow, broken,
    traceback, nan}."""
    root = Path(root) if root else Path(page).resolve().parent.parent
    done = _open(page, root, width, height, ["--dump-dom"], PROBE)
    found = re.search(r'<pre id="__probe__"[^>]*>(.*?)</pre>', done.stdout, re.S)  # scripts may add attributes
    if not found:
        raise RuntimeError(f"chromium did not lay out {page} (rc {done.returncode}): {done.stderr[-800:]}")
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, out: Path, width: int, root: Path | None = None, height: int = 1000) -> Path:
    """The first screen of ``page`` at ``width`` x ``height`` px, as a PNG."""
    root = Path(root) if root else Path(page).resolve().parent.parent
    out = Path(out).resolve()
    _open(page, root, width, height, [f"--screenshot={out}"])
    if width < 500:  # the window is 500 px: keep the iframe's part
        from PIL import Image
        Image.open(out).crop((0, 0, width, height)).save(out)
    return out
