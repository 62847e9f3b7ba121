"""The paper's scale on a GPU: ``python -m vgg bench gpu`` and what one seed of the study costs.

``bench_gpu`` (at most a few minutes on one GPU) measures, side by side in one process:
the bf16 matmul peak; training images/s of A and D at the ``gpu`` profile (the paper: 224
crops, full widths, batch 256; bf16 autocast and channels_last as ``vgg.train.fit``), eager
and under ``torch.compile``; D at the ``cpu128`` and ``cpu`` profiles on the same GPU; and
the data path's images/s (``vgg.datapath``: batches built on the GPU from resident images,
against the CPU building them). ``study_cost`` turns D's rate per profile into the hours
of one seed of the study (13 runs), from the epochs on record.
"""
from __future__ import annotations

import json
import statistics
import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import data as D
from .. import datapath
from ..io import ROOT
from ..model import build
from ..profiles import PROFILES
from ..spec import plan
from ..train import matmul_peak_flops, train_flops_per_image

PROFILE_ORDER = ("gpu", "cpu128", "cpu")
IMAGENETTE_TRAIN = 9469  # training images of Imagenette; 5% of them are the held-out slice
# Without a measurement: the share of a GPU's bf16 peak a VGG training step reaches (an
# assumption, stated wherever it is used; bench gpu replaces it with the measured rate)
ASSUMED_MFU = 0.3
H200_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100/H200 SXM (NVIDIA's data sheet)
# ... and the shortest step: the small profiles' nets are too small to fill a GPU, so a step
# costs its ~300 kernel launches (forward, backward, optimiser), about 10 us each
STEP_FLOOR_S = 3e-3


@lru_cache(maxsize=None)  # a meta-device build per (net, profile), once
def _flops(net: str, profile: str) -> float:
    prof = PROFILES[profile]
    with torch.device("meta"):  # no memory for 138M weights
        return train_flops_per_image(build(net, num_classes=10, width=prof.width, crop=prof.crop))


def _epochs(name: str, profile: str, parent: bool, runs_dir: Path) -> tuple[int, str]:
    """Epochs of one planned run: its own on record, else the same run's at cpu128 (the same
    plateau rule), else the profile's cap."""
    for where in (profile, "cpu128"):
        hist = runs_dir / where / name / "history.csv"
        if hist.exists():
            return max(0, len(hist.read_text().splitlines()) - 1), f"runs/{where}"
    prof = PROFILES[profile]
    return (prof.max_epochs_finetune if parent else prof.max_epochs), "cap"


def _eval_ratio(runs_dir: Path) -> float:
    """Evaluation time over training time of the complete cpu128 runs (every protocol)."""
    ev = tr = 0.0
    for m in (runs_dir / "cpu128").glob("*/metrics.json"):
        d = json.loads(m.read_text())
        if d.get("status") == "complete":
            ev, tr = ev + float(d.get("eval_seconds") or 0), tr + float(d["train"]["seconds"])
    return ev / tr if tr else 0.6  # 0.6: A-S256-s0's ratio, the first complete cpu128 run


def study_cost(rate_d: dict[str, float], runs_dir: str | Path = ROOT / "runs") -> dict[str, dict]:
    """Hours of one seed of the study per profile, from D's training images/s there
    (``rate_d``); each net's rate is D's scaled by the FLOPs (a lower bound for the small
    nets, whose kernels use the GPU less well), its epochs from the records (``_epochs``),
    evaluation at the cpu128 runs' ratio of evaluation to training time."""
    runs_dir = Path(runs_dir)
    n_train, ratio, out = round(IMAGENETTE_TRAIN * 0.95), _eval_ratio(runs_dir), {}
    for profile, img_s in rate_d.items():
        train_s, sources = 0.0, set()
        for r in plan(1, profile=profile):
            epochs, src = _epochs(r.name, profile, bool(r.row.parent), runs_dir)
            sources.add(src)
            train_s += epochs * n_train / (img_s * _flops("D", profile) / _flops(r.net, profile))
        out[profile] = dict(d_images_per_s=round(img_s, 1), train_h=train_s / 3600, eval_h=train_s * ratio / 3600,
                            total_h=train_s * (1 + ratio) / 3600, epochs_from=sorted(sources), eval_ratio=ratio)
    return out


def assumed_rates(peak: float = H200_BF16_PEAK, mfu: float = ASSUMED_MFU) -> dict[str, float]:
    """D's images/s per profile if a step reached ``mfu`` of ``peak`` but took at least
    ``STEP_FLOOR_S`` (no measurement: bench gpu measures these)."""
    out = {}
    for p in PROFILE_ORDER:
        batch = PROFILES[p].batch_size
        out[p] = batch / max(batch * _flops("D", p) / (mfu * peak), STEP_FLOOR_S)
    return out


def _train_rate(net: str, profile: str, dev, steps: int, repeats: int, compile: bool = False) -> float:
    prof = PROFILES[profile]
    model = build(net, num_classes=10, width=prof.width, crop=prof.crop).to(dev, memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(prof.batch_size, 3, prof.crop, prof.crop, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (prof.batch_size,), device=dev)
    rates = []
    for _ in range(repeats + 1):  # the first is the warm-up (cuDNN autotuning, compilation)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(step_model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        rates.append(steps * prof.batch_size / (time.perf_counter() - t))
    return statistics.median(rates[1:])


def _data_rates(dev, n_images: int = 512, batches: int = 20) -> dict[str, float]:
    """Images/s of the paper's training batches (S 256-512 jittered, 224 crops) from 320-px
    images of ImageNet's shapes, built on the CPU (one process) and on the GPU (resident)."""
    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 320, int(w)), dtype=torch.uint8, generator=g)
            for w in torch.randint(320, 480, (n_images,), generator=g)]
    images = D.Images(imgs, torch.arange(n_images) % 10, [f"{i}" for i in range(n_images)],
                      [f"c{i}" for i in range(10)])
    stats = D.ColourStats(torch.tensor([120.0, 115.0, 100.0]), torch.tensor([3e3, 300.0, 50.0]), torch.eye(3))
    out = {}
    for where, imgs_at in (("cpu", images), ("device", datapath.to_device(images, dev))):
        tb = D.TrainBatches(imgs_at, None, crop=224, scale=(256, 512), batch_size=256, stats=stats, seed=0)
        t, n = time.perf_counter(), 0
        for (x, _), _ in zip(tb.epoch(1), range(batches)):
            x = x.to(dev, non_blocking=True)
            n += len(x)
        torch.cuda.synchronize()
        out[where] = n / (time.perf_counter() - t)
    return out


def bench_gpu(args=None, steps: int = 20, repeats: int = 3, out: str | Path | None = None) -> dict:
    """See the module's docstring. Without a GPU: one line saying so, and nothing measured."""
    if not torch.cuda.is_available():
        print("bench gpu: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing measured")
        return {}
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    peak = matmul_peak_flops(dev, sizes=(4096, 8192), dtype=torch.bfloat16)
    res: dict = {"device": torch.cuda.get_device_name(), "gpus": torch.cuda.device_count(),
                 "bf16_matmul_peak_tflops": peak / 1e12, "torch": torch.__version__}
    print(f"{res['device']} (x{res['gpus']}): bf16 matmul peak {peak / 1e12:.0f} TFLOP/s")
    rate_d = {}
    for net, profile, comp in (("A", "gpu", False), ("D", "gpu", False), ("D", "gpu", True),
                               ("D", "cpu128", False), ("D", "cpu", False)):
        try:
            img_s = _train_rate(net, profile, dev, steps, repeats, compile=comp)
        except Exception as e:  # torch.compile may be unavailable (no triton): say so, go on
            print(f"{net} at {profile}{' compiled' if comp else ''}: failed ({type(e).__name__}: {e})")
            continue
        mfu = img_s * _flops(net, profile) / peak
        key = f"{net}@{profile}" + ("+compile" if comp else "")
        res[key] = {"images_per_s": img_s, "mfu": min(mfu, 1.0)}
        print(f"{key:18} {img_s:8.0f} img/s  bf16 MFU {min(mfu, 1.0):.2f}")
        if net == "D":
            rate_d[profile] = max(rate_d.get(profile, 0.0), img_s)
    res["data_images_per_s"] = _data_rates(dev)
    print("data path (S 256-512, 224 crops): " + ", ".join(
        f"batches built on the {k} {v:.0f} img/s" for k, v in res["data_images_per_s"].items()))
    res["study_seed"] = study_cost(rate_d)
    for p, c in res["study_seed"].items():
        print(f"one seed of the study at {p}: {c['total_h']:.2f} GPU-hours ({c['train_h']:.2f} training + "
              f"{c['eval_h']:.2f} evaluation), D at {c['d_images_per_s']:.0f} img/s")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=1) + "\n")
    return res


__all__ = ["bench_gpu", "study_cost", "assumed_rates", "ASSUMED_MFU", "H200_BF16_PEAK", "STEP_FLOOR_S"]
