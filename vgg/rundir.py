"""One run folder, ``runs/<profile>/<run>/``: the only code that reads or writes one.

| file | what | written |
|---|---|---|
| metrics.json | identity, config, training summary, ``eval`` (one record per protocol), provenance | last: its presence with ``status: complete`` marks a finished run |
| history.csv | one row per epoch | every epoch |
| probs.npz | float16 soft-max outputs per protocol, image ids, labels, classes | before metrics.json |
| weights.pt | final weights, float16 (in git: a fresh clone fine-tunes from them) | before metrics.json |
| checkpoint.pt | model, optimiser, schedule, RNG after the last epoch (never in git) | every epoch |
| env.json, run_config.ipynb | provenance; the executed notebook (papermill) | |
| superseded.json | earlier trainings of this folder, summarised (``vgg.ops.retire``) | |
| .lock | the pid of the process that owns the folder | while a run trains or evaluates |

Every file is written atomically (``vgg.io``). One process at a time owns a folder: ``lock``
holds an exclusive ``flock``, which the kernel drops when its process dies, so a lock left
by ``kill -9`` is simply taken over. Book, study and CLI agree on a folder's ``state``
because they all ask this class.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import io as vio

# eval_version 1 (before centred dense windows, see vgg.evaluate.centre_windows): its results
# of the protocols with dense windows are read under names of their own.
_V1 = {"dense@": "dense-topleft@", "multi-scale": "multi-scale-topleft",
       "multi-crop+dense": "multi-crop+dense-topleft"}


class BrokenRun(ValueError):
    """A metrics.json that cannot be read as a result."""


class RunLocked(RuntimeError):
    """Another live process owns the run folder."""


def _version(metrics: dict) -> int:
    """The evaluation's version of a record: one without a version is version 1."""
    return int(metrics.get("eval_version", 1))


def _legacy_key(key: str, version: int) -> str:
    if version >= 2:
        return key
    for old, new in _V1.items():
        if key == old or (old.endswith("@") and key.startswith(old)):
            return new + key[len(old):]
    return key


class RunDir:
    METRICS, HISTORY, PROBS, WEIGHTS = "metrics.json", "history.csv", "probs.npz", "weights.pt"
    CHECKPOINT, ENV, SUPERSEDED, LOCK = "checkpoint.pt", "env.json", "superseded.json", ".lock"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    # --- state -------------------------------------------------------------------------
    def state(self) -> str:
        """missing / running (a live process holds the lock) / partial (epochs, no result) /
        failed / complete / broken (a metrics.json that is not a readable result)."""
        if not self.path.is_dir():
            return "missing"
        if self.locked_by() is not None:
            return "running"
        if (self.path / self.METRICS).exists():
            try:
                return "complete" if self.metrics().get("status") == "complete" else "failed"
            except BrokenRun:
                return "broken"
        if self.checkpoint.exists() or (self.path / self.HISTORY).exists():
            return "partial"
        return "missing"

    def is_complete(self) -> bool:
        return self.state() == "complete"

    def locked_by(self) -> int | None:
        """The pid of the live process that holds this folder's lock, else None."""
        path = self.path / self.LOCK
        if not path.exists():
            return None
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                text = f.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(f, fcntl.LOCK_UN)
        return None

    def _in_use(self, holder) -> RunLocked:
        return RunLocked(f"{self.path} is in use by process {holder} (lock file {self.path / self.LOCK}); "
                         f"wait for it to finish, or stop that process")

    def check_free(self) -> None:
        """Raise ``RunLocked`` at once when a live process owns the folder."""
        holder = self.locked_by()
        if holder is not None:
            raise self._in_use(holder)

    @contextmanager
    def lock(self):
        """Own the folder for the block; a second process fails at once, naming the holder."""
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / self.LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise self._in_use(holder) from None
        f.seek(0)
        before = f.read().strip()
        if before and before != str(os.getpid()):
            print(f"{self.path}: taking over the lock of process {before}, which is no longer running",
                  file=sys.stderr)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        for tmp in self.path.glob(".*.tmp"):  # half-written files of a killed process (vgg.io)
            tmp.unlink(missing_ok=True)
        try:
            yield self
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    # --- reading -----------------------------------------------------------------------
    def metrics(self) -> dict | None:
        """metrics.json, or None when there is none; ``BrokenRun`` when it is not a result."""
        path = self.path / self.METRICS
        if not path.exists():
            return None
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise BrokenRun(f"{path}: {err}") from None
        if not isinstance(m, dict):
            raise BrokenRun(f"{path} is not a JSON object")
        if m.get("status") == "complete":
            missing = [k for k in ("run", "net", "train_scale", "seed", "eval") if k not in m]
            if missing or not isinstance(m.get("eval"), dict):
                raise BrokenRun(f"{path} has status complete but no {missing or 'eval object'}")
        return m

    def results(self) -> dict:
        """The run's protocol records by result key: metrics.json's ``eval`` (results of an
        older protocol under that protocol's name) plus the dense-context records made
        before windows-as-crops was a protocol (``dense_context_Q<q>.json``)."""
        m = self.metrics() or {}
        version = _version(m)
        out = {_legacy_key(k, version): v for k, v in m.get("eval", {}).items()}
        for f in sorted(self.path.glob("dense_context_Q*.json")):
            try:
                r = json.loads(f.read_text())
                e = r["top1_err"]
                out.setdefault(f"windows-as-crops@{r['q']}", dict(
                    top1_err=e["crops_on_grid"], top5_err=None, window_in_dense=e["window_in_dense"],
                    window_as_crop=e["window_as_crop"], dense=e["dense"], centre_crop=e["centre_crop"],
                    n_images=e["n_images"], n_windows=e["n_windows"], scales=[r["q"]], scales_px=[r["q_px"]],
                    seconds=r.get("seconds"), protocol="windows-as-crops", record=f.name))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or not a record
        return out

    def history(self) -> list[dict]:
        path = self.path / self.HISTORY
        if not path.exists():
            return []
        def number(k, v):
            return int(v) if k == "epoch" else float(v) if v not in ("", None) else float("nan")
        return [{k: number(k, v) for k, v in r.items()} for r in csv.DictReader(io.StringIO(path.read_text()))]

    def probs(self) -> dict | None:
        """{"ids", "labels", "classes", "probs": {result key: float32 [N, classes]}, "path"}, or None."""
        path = self.path / self.PROBS
        if not path.exists():
            return None
        version = _version(self.metrics() or {})
        with np.load(path, allow_pickle=False) as z:
            return {"ids": [str(i) for i in z["ids"]], "labels": z["labels"].astype(np.int64),
                    "classes": [str(c) for c in z["classes"]], "path": str(path),
                    "probs": {_legacy_key(k[len("probs/"):], version): z[k].astype(np.float32)
                              for k in z.files if k.startswith("probs/")}}

    def superseded(self) -> list[dict]:
        path = self.path / self.SUPERSEDED
        try:
            entries = json.loads(path.read_text()) if path.exists() else []
        except (OSError, ValueError):
            return []
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def weights(self) -> dict:
        """The final weights as a float32 state dict: the checkpoint's where it is here (exact),
        else weights.pt (float16, kept in git)."""
        if self.checkpoint.exists():
            return torch.load(self.checkpoint, map_location="cpu", weights_only=False)["model"]
        if (self.path / self.WEIGHTS).exists():
            state = torch.load(self.path / self.WEIGHTS, map_location="cpu", weights_only=True)
            return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        raise FileNotFoundError(f"{self.path} has neither {self.WEIGHTS} nor {self.CHECKPOINT}: train the run "
                                f"again (runs made before weights were kept have only their results)")

    def has_weights(self) -> bool:
        return self.checkpoint.exists() or (self.path / self.WEIGHTS).exists()

    def load_into(self, model) -> dict:
        """Load this finished run's final weights into ``model`` (the init chain, Sect. 3.1);
        refuses, before touching it, another net, width, crop or classes. Returns the metrics."""
        m = self.metrics()
        if not m or m.get("status") != "complete":
            raise FileNotFoundError(f"{self.path} is not a complete run (no metrics.json with status "
                                    f"'complete'); run it first, e.g. with `python -m vgg study`")
        ours = dict(net=model.net, width=model.width, crop=model.crop, num_classes=model.num_classes)
        theirs = {k: m.get("model", {}).get(k) for k in ours}
        if ours != theirs:
            diff = ", ".join(f"{k}: {self.name} {theirs[k]!r} vs {ours[k]!r}" for k in ours if ours[k] != theirs[k])
            raise ValueError(f"{self.path} is another network ({diff}); the init chain starts a run "
                             f"from the same configuration")
        model.load_state_dict(self.weights())
        return m

    # --- writing -----------------------------------------------------------------------
    def write_history(self, rows: list[dict], columns: list[str]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        # significant digits, not decimals: round(1e-6, 5) wrote a fine-tune's last lr as 0.0
        writer.writerows({k: (float(f"{v:.7g}") if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
        vio.write_text(self.path / self.HISTORY, buf.getvalue())

    def write_probs(self, ids, labels, classes, probs: dict[str, np.ndarray]) -> None:
        """float16 soft-max outputs per result key, with the image ids, labels and classes,
        so runs can be fused later without running them again."""
        ids, classes = [str(i) for i in ids], [str(c) for c in classes]
        labels = np.asarray(labels, dtype=np.int64).ravel()
        if len(labels) != len(ids) or not probs:
            raise ValueError(f"{len(ids)} ids, {len(labels)} labels, {len(probs)} protocols: nothing consistent to save")
        arrays = {"ids": np.array(ids, dtype=str), "labels": labels, "classes": np.array(classes, dtype=str)}
        for key, p in probs.items():
            p = np.asarray(p)
            if p.shape != (len(ids), len(classes)) or not np.isfinite(p).all():
                raise ValueError(f"probs[{key!r}] has shape {p.shape} or non-finite values; expected finite "
                                 f"(images, classes) = ({len(ids)}, {len(classes)})")
            arrays["probs/" + key] = p.astype(np.float16)
        with vio.atomic_path(self.path / self.PROBS) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    def save_weights(self, model) -> None:
        with vio.atomic_path(self.path / self.WEIGHTS) as tmp:
            torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, tmp)

    def write_env(self, env: dict) -> None:
        vio.write_json(self.path / self.ENV, env)

    def finish(self, metrics: dict) -> None:
        """Write metrics.json, last: from here on the folder reads as a finished run."""
        vio.write_json(self.path / self.METRICS, metrics)

    def retire(self, reason: str) -> dict:
        """Set a complete run's result aside before it is trained again, so the folder holds one
        training at a time: a summary of it (commit, host, epochs, seconds, every error it
        reported) is appended to superseded.json, then metrics.json (first: the folder never
        reads as complete without its files), history.csv, probs.npz, env.json and
        dense-context records are removed (git keeps them). Returns the summary."""
        m = self.metrics()
        if not m or m.get("status") != "complete":
            raise ValueError(f"{self.path} is not a complete run (no metrics.json with status 'complete'); "
                             f"nothing to retire")
        prov, rows = m.get("provenance", {}), self.history()
        contexts = sorted(self.path.glob("dense_context_Q*.json"))
        entry = dict(run=m["run"], reason=reason, retired=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     git_commit=prov.get("git_commit"), host=prov.get("host"), cpu=prov.get("cpu"),
                     epochs=len(rows), train_seconds=round(sum(r["seconds"] for r in rows), 1),
                     eval_seconds=m.get("eval_seconds"), reevaluated=len(m.get("reevaluated", [])),
                     final_holdout_top1_err=m.get("train", {}).get("final_holdout_top1_err"),
                     top1_err={k: v.get("top1_err") for k, v in m.get("eval", {}).items()},
                     dense_context={r["q"]: r["top1_err"] for r in (json.loads(f.read_text()) for f in contexts)})
        earlier = self.superseded()
        key = ("git_commit", "host", "train_seconds", "eval_seconds")
        if not any(all(e.get(k) == entry[k] for k in key) for e in earlier):  # once per training
            vio.write_json(self.path / self.SUPERSEDED, earlier + [entry])
        (self.path / self.METRICS).unlink()
        for f in contexts + [self.path / n for n in (self.PROBS, self.ENV, self.HISTORY, self.WEIGHTS)]:
            f.unlink(missing_ok=True)
        return entry

    def clear_result(self) -> None:
        """Remove metrics.json (a failed attempt's record) before a new attempt."""
        (self.path / self.METRICS).unlink(missing_ok=True)


def scan(runs_dir: str | os.PathLike) -> list[RunDir]:
    """Every run folder under ``runs_dir`` (``<profile>/<run>/``), sorted, hidden ones skipped."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [RunDir(r) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")
            for r in sorted(p.iterdir()) if r.is_dir() and not r.name.startswith(".")]


__all__ = ["RunDir", "BrokenRun", "RunLocked", "scan"]
