"""Schema-true fake run folders, to test the book before real runs exist.

``write_fake_runs(runs_dir, profile="smoke", seeds=(0, 1))`` writes, for every run of the
plan (``vgg.spec.plan``), what ``vgg.run.run_experiment`` writes, through ``RunDir``:
history.csv, probs.npz (float16 soft-max per result key of the row's protocols, the same
images, labels and classes in every run), env.json, metrics.json (status complete, one
record per result key, laid out as ``vgg.evaluate.evaluate_run`` makes them), and a
minimal run_config.ipynb (execution off, as papermill leaves it). No weights.pt: the book
never reads weights, and a fake run is no parent of a real one. Errors are the paper's
plus noise, so the book's tables look plausible. Run as a script to fill a folder:

    python tests/fake_runs.py runs --profile smoke --seeds 2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vgg.config import RunConfig
from vgg.evaluate import PROTOCOLS, result_key
from vgg.profiles import PROFILES, test_scales
from vgg.rundir import RunDir
from vgg.spec import plan
from vgg.stats import bootstrap_ci, errors, topk_correct
from vgg.train import HISTORY_COLUMNS

CLASSES = np.array(["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888605"])
N_IMAGES = 300
EPOCHS = 4
EVAL_SECONDS = 30.0

# plausible top-1 errors (paper-like ordering) by net; protocols shift them
BASE = {"A": 30, "A-LRN": 30.2, "B": 29, "B-5x5": 35, "C": 28, "D": 27, "E": 27}
GAIN = {"multi-scale": 0.8, "centre-crop": -3.0, "multi-crop": 1.0, "multi-crop+dense": 1.4, "windows-as-crops": 1.2}


def _probs(rng, labels, target_err: float) -> np.ndarray:
    n, k = labels.size, CLASSES.size
    logits = rng.normal(0, 1, (n, k))
    right = rng.random(n) > target_err / 100
    logits[np.arange(n), labels] += np.where(right, 4.0, -4.0)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float16)


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


def _record(name: str, probs: np.ndarray, labels: np.ndarray, scales: list[int], prof, base: float) -> dict:
    """One protocol's record, as ``vgg.evaluate.evaluate_run`` writes it."""
    err = errors(probs.astype(np.float32), labels)
    _, lo, hi = bootstrap_ci(topk_correct(probs.astype(np.float32), labels, 1), n_boot=200)
    seconds = 12.5
    rec = {"top1_err": round(err["top1_err"], 2), "top5_err": round(err["top5_err"], 2),
           "top1_ci95": [round(lo, 2), round(hi, 2)], "scales": scales, "scales_px": [prof.px(q) for q in scales],
           "n_images": int(labels.size), "seconds": seconds, "images_per_s": round(labels.size / seconds, 2),
           "protocol": name}
    if name == "windows-as-crops":  # the dense-context numbers of its record
        rec.update(window_in_dense=round(base + 12.0, 2), window_as_crop=round(base + 4.0, 2),
                   dense=round(base + 1.0, 2), centre_crop=round(base + 3.0, 2), n_windows=6 * int(labels.size))
    return rec


def write_run(folder: Path, planned, profile: str, seed_rng: np.random.Generator, ids, labels,
              status: str = "complete") -> None:
    rd, prof = RunDir(folder), PROFILES[profile]
    folder.mkdir(parents=True, exist_ok=True)
    base = BASE[planned.net] + (0 if planned.train_scale == "256" else -0.5 if planned.train_scale == "384" else -1.5)
    base += seed_rng.normal(0, 1)
    probs, evals = {}, {}
    for name in planned.protocols:
        key, scales = result_key(name, planned.train_scale), test_scales(planned.train_scale)[PROTOCOLS[name].scales]
        probs[key] = _probs(seed_rng, labels, base - GAIN.get(name, 0))
        evals[key] = _record(name, probs[key], labels, scales, prof, base)
    hist = [dict(epoch=e, train_loss=round(2.3 / e, 4), train_top1_err=round(90 / e, 2),
                 holdout_top1_err=round(base + 40 / e, 2), holdout_top5_err=round(10 / e, 2),
                 lr=0.01 if e < 3 else 0.001, seconds=30.0 * e, images_per_s=150.0) for e in range(1, EPOCHS + 1)]
    rd.write_history(hist, HISTORY_COLUMNS)
    rd.write_probs(ids, labels, CLASSES, probs)
    params = planned.params(profile)
    cfg = RunConfig.from_dict(dict(params, out=str(folder)))
    env = {"git_commit": "0" * 40, "python": "3.11.9", "torch": "2.14.1", "torchvision": "0.29.1",
           "numpy": np.__version__, "platform": "Linux-fake", "cpu": "fake CPU", "cpu_count": 2, "torch_threads": 2,
           "gpu": None, "host": "0badf00d", "wall_seconds": 400.0, "matmul_peak_flops": 1e11}
    rd.write_env(env)
    rd.finish({
        "run": planned.name, "net": planned.net, "train_scale": planned.train_scale, "seed": planned.seed,
        "profile": profile, "status": status, "config": cfg.to_dict(),
        "model": {"net": planned.net, "width": prof.width, "crop": prof.crop, "num_classes": int(CLASSES.size),
                  "params": 1_000_000, "init": f"weights of {params['init_from']}" if "init_from" in params else "glorot"},
        "data": {"root": "data/imagenette2-160", "n_train": 9000, "n_holdout": 475, "n_val": int(labels.size),
                 "classes": CLASSES.tolist(), "mean_rgb": [123.7, 116.3, 103.5]},
        "train": {"epochs": EPOCHS, "stopped": "schedule end", "lr_drops": 1,
                  "seconds": round(sum(h["seconds"] for h in hist), 1), "images_per_s": 150.0,
                  "best_holdout_top1_err": min(h["holdout_top1_err"] for h in hist),
                  "final_holdout_top1_err": hist[-1]["holdout_top1_err"], "mfu": 0.12},
        "eval": evals, "eval_seconds": EVAL_SECONDS, "eval_version": 2, "provenance": env,
    })
    (folder / "run_config.ipynb").write_text(json.dumps(notebook(planned.name, profile, params), indent=1))


def write_fake_runs(runs_dir, profile: str = "smoke", seeds=(0, 1), nets=None) -> list[Path]:
    """Write the plan's runs for ``seeds`` (optionally only ``nets``); return their folders."""
    runs_dir = Path(runs_dir)
    rng = np.random.default_rng(0)
    ids = np.array([f"val/{CLASSES[i % 10]}/img{i:05d}.JPEG" for i in range(N_IMAGES)])
    labels = (np.arange(N_IMAGES) % CLASSES.size).astype(np.int64)
    out = []
    for p in plan(list(seeds), profile=profile):
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
