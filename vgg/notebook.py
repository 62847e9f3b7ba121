"""Running ``book/run_config.ipynb`` with papermill as a child process that can be stopped.

papermill's kernel lives in a process session of its own, out of a terminal's Ctrl-C, and an
in-process papermill call cannot be interrupted from another thread. So each execution is
``python -m papermill`` in its own session, killed with its kernel (found through /proc) by
``stop_all`` or when ``execute`` is left early (Ctrl-C, a kill); the run resumes from its last
checkpoint. Printed lines pass on one by one, papermill's chatter dropped; a failure becomes one
line naming the run and the executed notebook with the full traceback."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from .io import ROOT

NOTEBOOK = ROOT / "book" / "run_config.ipynb"
_NOISE = ("Input Notebook:", "Output Notebook:", "Working directory:", "Executing notebook with kernel",
          "Executing Cell", "Ending Cell", "Kernel is running over TCP without encryption", "<Figure size",
          "Black is not installed", "[NbConvertApp]")
_running: dict[int, subprocess.Popen] = {}
_lock = threading.Lock()


class RunFailed(RuntimeError):
    """The notebook stopped with an error; the message is one line."""


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def stop_all(procs: list[subprocess.Popen] | None = None) -> int:
    """Kill every running notebook (or those of ``procs``) and its kernel; returns how many."""
    with _lock:
        procs = list(_running.values()) if procs is None else procs
    for p in procs:
        for pid in _descendants(p.pid) + [p.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for p in procs:
        p.wait()
    return len(procs)


def error_line(executed: Path) -> str | None:
    """``ename: evalue`` of the cell that failed in an executed notebook, if any."""
    try:
        nb = json.loads(executed.read_text())
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                text = str(out.get("evalue", "")).strip().splitlines()
                return f"{out.get('ename')}: {text[-1] if text else ''}"
    return None


def execute(params: dict, out_dir: Path, *, name: str, echo: Callable[[str], None] | None = None,
            notebook: Path = NOTEBOOK) -> None:
    """Execute the notebook with ``params`` into ``out_dir/run_config.ipynb`` (the folder is
    made first: papermill refuses a missing one), each printed line passed to ``echo``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / "run_config.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(executed), "-y", json.dumps(params),
           "--cwd", str(ROOT), "--no-progress-bar", "--log-output"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    with _lock:
        _running[proc.pid] = proc
    tail: list[str] = []
    traceback = False  # from the first line of an error on, the executed notebook holds it all
    try:
        for line in proc.stdout:
            line = line.rstrip()
            traceback = traceback or line.startswith(("Traceback", "-----", "Exception encountered", "papermill."))
            if line and not any(n in line for n in _NOISE):
                tail = (tail + [line])[-20:]
                if echo and not traceback:
                    echo(line)
        rc = proc.wait()
    except BaseException:  # Ctrl-C or a kill while it runs: its kernel, in a session of its own, goes too
        stop_all([proc])
        raise
    finally:
        with _lock:
            _running.pop(proc.pid, None)
    if rc < 0:  # killed: stop_all, or a signal from outside
        raise KeyboardInterrupt(f"{name} was stopped")
    if rc:
        why = error_line(executed) or next((t for t in reversed(tail) if ": " in t), tail[-1] if tail else f"exit {rc}")
        shown = executed.relative_to(ROOT) if executed.is_relative_to(ROOT) else executed
        raise RunFailed(f"{name} failed: {why} (full traceback in {shown})")


def sigterm_interrupts() -> None:
    """SIGTERM (a kill, a scheduler) stops the main thread like Ctrl-C's SIGINT does."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt("SIGTERM")))


__all__ = ["execute", "stop_all", "sigterm_interrupts", "RunFailed", "error_line", "NOTEBOOK"]
