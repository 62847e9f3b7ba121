"""Schema-true fake run folders, to test the book before real runs exist.

``write_fake_runs(runs_dir, profile="smoke", seeds=(0, 1))`` writes, for every run of the
study plan: metrics.json (status complete), history.csv, probs.npz (float16 softmax per
protocol, the same images/labels/classes in every run), env.json and a minimal
run_config.ipynb (execution off, as papermill leaves it). Errors are the paper's plus
noise, so the book's tables look plausible. Run as a script to fill a folder:

    python tests/fake_runs.py runs --profile smoke --seeds 2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vgg.evaluate import EVAL_VERSION
from vgg.profiles import test_scales
from vgg.study import plan

CLASSES = np.array(["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888605"])
N_IMAGES = 300

# plausible top-1 errors (paper-like ordering) by (net, S)
BASE = {"A": 30, "A-LRN": 30.2, "B": 29, "B-5x5": 35, "C": 28, "D": 27, "E": 27}


def _protocols(net: str, scale: str, multi_crop: bool) -> list[str]:
    q = test_scales(scale)["single"][0]
    protos = [f"dense@{q}", f"centre-crop@{q}", "multi-scale"]
    if multi_crop:
        protos += ["multi-crop", "multi-crop+dense"]
    return protos


def _probs(rng, labels, target_err: float) -> np.ndarray:
    n, k = labels.size, CLASSES.size
    logits = rng.normal(0, 1, (n, k))
    right = rng.random(n) > target_err / 100
    logits[np.arange(n), labels] += np.where(right, 4.0, -4.0)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float16)


def save_probs(path: Path, ids, labels, classes, probs: dict) -> None:
    """vgg.evaluate.save_probs when it exists, else the layout vgg.results reads."""
    try:
        from vgg.evaluate import save_probs as real
    except ImportError:
        real = None
    if real is not None:
        real(path, ids=ids, labels=labels, classes=classes, probs=probs)
        return
    np.savez_compressed(path, ids=ids, labels=labels, classes=classes,
                        **{f"probs/{k}": v for k, v in probs.items()})


def notebook(name: str, profile: str, params: dict) -> dict:
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}, "mystnb": {"execution_mode": "off"},
                     "papermill": {"parameters": params}},
        "cells": [
            {"cell_type": "markdown", "id": "title", "metadata": {}, "source": "# One run of the study\n\nFake."},
            {"cell_type": "code", "id": "params", "metadata": {"tags": ["injected-parameters"]},
             "execution_count": 1, "source": src,
             "outputs": [{"output_type": "stream", "name": "stdout", "text": f"{name} ({profile})\n"}]},
            {"cell_type": "markdown", "id": "sec", "metadata": {}, "source": "## Training\n\nDone."},
        ],
    }


def write_run(folder: Path, planned, profile: str, seed_rng: np.random.Generator,
              ids, labels, status: str = "complete") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = BASE[planned.net] + (0 if planned.train_scale == "256" else -0.5 if planned.train_scale == "384" else -1.5)
    base += seed_rng.normal(0, 1)
    protos = _protocols(planned.net, planned.train_scale, planned.multi_crop)
    gains = {"multi-scale": 0.8, f"centre-crop@{test_scales(planned.train_scale)['single'][0]}": -3.0, "multi-crop": 1.0, "multi-crop+dense": 1.4}
    probs = {p: _probs(seed_rng, labels, base - gains.get(p, 0)) for p in protos}
    ev = {}
    for p, pr in probs.items():
        top = np.argsort(-pr.astype(np.float32), axis=1)
        q = test_scales(planned.train_scale)
        scales = q["single"] if "@" in p else q["multi"]
        ev[p] = {"top1_err": float(100 * np.mean(top[:, 0] != labels)),
                 "top5_err": float(100 * np.mean(~(top[:, :5] == labels[:, None]).any(1))),
                 "scales": scales, "scales_px": [round(s * 2 / 7) for s in scales],
                 "n_images": int(labels.size), "seconds": 12.5, "images_per_s": 24.0}
    epochs = 4
    hist = ["epoch,train_loss,train_top1_err,holdout_top1_err,holdout_top5_err,lr,seconds,images_per_s"]
    for e in range(1, epochs + 1):
        lr = 0.01 if e < 3 else 0.001
        hist.append(f"{e},{2.3 / e:.4f},{90 / e:.2f},{base + 40 / e:.2f},{10 / e:.2f},{lr},{30.0 * e},{150.0}")
    (folder / "history.csv").write_text("\n".join(hist) + "\n")
    save_probs(folder / "probs.npz", ids, labels, CLASSES, probs)
    params = planned.params(profile)
    metrics = {
        "run": planned.name, "net": planned.net, "train_scale": planned.train_scale, "seed": planned.seed,
        "profile": profile, "status": status, "config": params,
        "model": {"net": planned.net, "width": 0.25, "crop": 64, "num_classes": 10},
        "data": {"n_train": 9000, "n_holdout": 475, "n_val": int(labels.size)},
        "train": {"epochs": epochs, "seconds": 120.0 + 10 * seed_rng.random(), "images_per_s": 150.0,
                  "stopped": "epoch cap", "best_holdout_top1_err": base + 10, "mfu": 0.12},
        "eval": ev, "eval_seconds": 30.0, "eval_version": EVAL_VERSION,
        "provenance": {"git_commit": "0" * 40, "torch": "2.14.1", "cpu": "fake CPU", "torch_threads": 2},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "env.json").write_text(json.dumps(metrics["provenance"], indent=2))
    (folder / "run_config.ipynb").write_text(json.dumps(notebook(planned.name, profile, params), indent=1))


def write_fake_runs(runs_dir, profile: str = "smoke", seeds=(0, 1), nets=None) -> list[Path]:
    """Write the study plan's runs for ``seeds`` (optionally only ``nets``); return folders."""
    runs_dir = Path(runs_dir)
    rng = np.random.default_rng(0)
    ids = np.array([f"val/{CLASSES[i % 10]}/img{i:05d}.JPEG" for i in range(N_IMAGES)])
    labels = (np.arange(N_IMAGES) % CLASSES.size).astype(np.int64)
    out = []
    for p in plan(list(seeds)):
        if nets and p.net not in nets:
            continue
        folder = runs_dir / profile / p.name
        write_run(folder, p, profile, np.random.default_rng(rng.integers(1 << 31)), ids, labels)
        out.append(folder)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--seeds", type=int, default=2)
    a = ap.parse_args()
    print(len(write_fake_runs(a.runs_dir, a.profile, range(a.seeds))), "fake runs written")
