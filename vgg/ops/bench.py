"""Benchmarks: ``python -m vgg bench data|train|eval|lrn|gpu``. Speed lives here, never in tests.

Timings drift +-20% between runs on a shared machine, so each benchmark compares its
variants side by side in one process and reports medians of several repeats.
"""
from __future__ import annotations

import os

from .. import data as D
from ..evaluate import dense_probs, multi_crop_probs
from ..model import LocalResponseNorm, build
from ..profiles import PROFILES
from ..train import matmul_peak_flops, pick_device, train_flops_per_image
from .gpu import bench_gpu


def bench_data(args=None, n_images: int = 2000, repeats: int = 3) -> dict:
    """Images/s of vgg.data's pipeline vs a textbook torchvision one (Imagenette, cpu profile).

    Both make the training batches of Sect. 3.1 (rescale to S, random 64x64 crop, flip, mean
    subtraction) for the same ~2000 train images, batch 64, at S = 256 and S in [256, 512]
    paper px (73 and 73-146 real). vgg.data: TrainBatches with prefetch off (the pipeline
    itself, in the main process, on top of PCA colour shift the textbook one lacks).
    Textbook: ImageFolder + PIL + transforms.Compose + DataLoader(num_workers=2), decoding
    every JPEG every epoch. Medians of ``repeats`` passes; the one-off decode into the cache
    (and worker start-up, with persistent workers) is reported or excluded, not mixed in.
    """
    import statistics
    import time

    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets
    from torchvision import transforms as T


    prof = PROFILES["cpu"]
    root = D.find_data(getattr(args, "data", None))
    decoded = []  # count decodes, to tell a cache build from a cache read
    orig_decode = D._decode
    D._decode = lambda path: (decoded.append(1), orig_decode(path))[1]
    try:
        t = time.perf_counter()
        train = D.load_split(root, "train", cache_side=prof.cache_side)
        first_load = time.perf_counter() - t
    finally:
        D._decode = orig_decode
    t = time.perf_counter()
    train = D.load_split(root, "train", cache_side=prof.cache_side, progress=False)
    cached_load = time.perf_counter() - t
    t = time.perf_counter()
    stats = D.colour_stats(train)
    stats_s = time.perf_counter() - t

    bs, crop = prof.batch_size, prof.crop
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(train), generator=g)[: n_images // bs * bs].sort().values
    n = len(idx)
    scales = {"256": (prof.px(256), prof.px(256)), "256-512": (prof.px(256), prof.px(512))}

    def median_rate(one_pass) -> float:
        times = []
        for r in range(repeats):
            t = time.perf_counter()
            one_pass(r)
            times.append(time.perf_counter() - t)
        return n / statistics.median(times)

    rows = {}
    for name, (lo, hi) in scales.items():
        tb = D.TrainBatches(train, idx, crop=crop, scale=(lo, hi), batch_size=bs, stats=stats,
                            seed=0, prefetch=False)
        rows[f"vgg.data TrainBatches, S={name} ({lo}-{hi} px)"] = median_rate(
            lambda r: sum(1 for _ in tb.epoch(r)))

        # A Resize of a random integer size per image: S ~ U{lo..hi}, as the paper's jitter.
        resize = T.Resize(lo) if lo == hi else T.RandomChoice([T.Resize(s) for s in range(lo, hi + 1)])
        tf = T.Compose([resize, T.RandomCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize((stats.mean / 255).tolist(), [1 / 255] * 3)])  # 0-255 minus mean
        ds = Subset(datasets.ImageFolder(str(root / "train"), transform=tf), idx.tolist())
        loader = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=2, drop_last=True,
                            persistent_workers=True)
        rows[f"textbook ImageFolder+PIL, 2 workers, S={name} ({lo}-{hi} px)"] = median_rate(
            lambda r: sum(1 for _ in loader))
        del loader  # shuts its workers down

    print(f"Imagenette train, cpu profile: crop {crop}, batch {bs}, {n} images per pass, "
          f"median of {repeats}, {torch.get_num_threads()} torch threads")
    print(f"load: first {first_load:.1f} s ({len(decoded)} images decoded), cached {cached_load:.2f} s; "
          f"colour stats {stats_s:.1f} s")
    print(f"{'pipeline':62} {'images/s':>9}")
    for name, r in rows.items():
        print(f"{name:62} {r:9.0f}")
    return {"images": n, "batch_size": bs, "crop": crop, "images_per_s": rows,
            "first_load_s": first_load, "decoded_images": len(decoded),
            "cached_load_s": cached_load, "colour_stats_s": stats_s}


def warn_if_loaded() -> None:
    """One line when other processes keep the CPU busy: the matmul peak and the rates are then
    both low, by different amounts, so their ratio (the MFU) is unreliable (it read 1.09)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load >= 0.5:
        print(f"warning: the machine is loaded (load average {load:.1f} on {cores} cores): the peak and the "
              f"rates are low and the MFU unreliable; rerun on an idle machine")


def mfu_text(mfu: float) -> str:
    """The MFU as printed: never above 1 (a peak measured under load is too low)."""
    return f"{min(mfu, 1.0):6.2f}" + ("  (capped: the peak was measured under load)" if mfu > 1 else "")


def bench_train(args=None, nets=("A", "D"), steps: int = 30, repeats: int = 3) -> dict:
    """Training images/s and model-FLOP utilisation (MFU) for A and D at the cpu profile,
    data included (TrainBatches with prefetch feeding the real training step).

    MFU = achieved model FLOP/s (6 x forward multiply-adds per image) over this machine's
    measured fp32 matmul peak (``vgg.train.matmul_peak_flops``: the best over sizes and
    repeats), measured in the same process; a loaded machine is warned of, the MFU capped at 1.
    """
    import statistics
    import time

    import torch
    import torch.nn.functional as F


    prof = PROFILES["cpu"]
    warn_if_loaded()
    device = pick_device("auto")
    train = D.load_split(D.find_data(), "train", per_class=(steps + 3) * prof.batch_size // 10 + 1)
    stats = D.colour_stats(train)
    peak = matmul_peak_flops(device)
    results = {"matmul_peak_gflops": peak / 1e9, "threads": torch.get_num_threads()}
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    print(f"{'net':4} {'images/s':>9} {'GFLOP/s':>8} {'MFU':>6}")
    for net in nets:
        model = build(net, num_classes=10, width=prof.width, crop=prof.crop).to(device, memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        batches = D.TrainBatches(train, None, crop=prof.crop, scale=(prof.px(256), prof.px(256)),
                                 batch_size=prof.batch_size, stats=stats, seed=0)
        rates = []
        for rep in range(repeats):
            it = batches.epoch(rep + 1)
            for _ in range(3):  # warm-up steps, not timed
                x, y = next(it)
                F.cross_entropy(model(x.to(device)), y.to(device)).backward()
            t, n = time.perf_counter(), 0
            for _, (x, y) in zip(range(steps), it):
                loss = F.cross_entropy(model(x.to(device)), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n += len(y)
            rates.append(n / (time.perf_counter() - t))
            it.close()
        img_s = statistics.median(rates)
        flops = img_s * train_flops_per_image(model)
        results[net] = {"images_per_s": img_s, "gflops": flops / 1e9, "mfu": min(flops / peak, 1.0)}
        print(f"{net:4} {img_s:9.0f} {flops / 1e9:8.1f} {mfu_text(flops / peak)}")
    return results


def bench_eval(args=None, n_images: int = 200, n_crop_images: int = 20, repeats: int = 2) -> dict:
    """Images/s of dense and multi-crop evaluation at the cpu profile (net D, untrained,
    10 classes): dense with flip at Q = 256, 384, 512 paper px (73, 110, 146 real) on
    ~200 Imagenette val images; multi-crop (5x5 grid x 2 flips) at one scale (50 crops)
    and three (150 crops) on a subset; dense batched by rescaled size vs one image at a
    time. The cost ratio multi-crop(3 scales) / dense(3 scales) is per image.
    Medians of ``repeats`` timings (multi-crop and the unbatched row: 1), after a warm-up.
    """
    import statistics
    import time

    import torch


    prof = PROFILES["cpu"]
    device = pick_device("auto")
    try:
        images = D.load_split(D.find_data(), "val", per_class=max(1, n_images // 10), progress=False)
        mean, source = D.colour_stats(images).mean, "Imagenette val"
    except FileNotFoundError:
        g = torch.Generator().manual_seed(0)
        imgs = [torch.randint(0, 256, (3, 160, 213), dtype=torch.uint8, generator=g)
                for _ in range(n_images)]
        images = D.Images(imgs, torch.zeros(n_images, dtype=torch.int64),
                          [str(i) for i in range(n_images)], [f"c{i}" for i in range(10)])
        mean, source = torch.full((3,), 115.0), "random 160x213"
    few = images.subset(range(0, len(images), max(1, len(images) // n_crop_images)))
    torch.manual_seed(0)
    model = build("D", num_classes=10, width=prof.width, crop=prof.crop).to(
        device, memory_format=torch.channels_last)
    bs = prof.eval_batch_size
    qs = [256, 384, 512]
    px = {q: prof.px(q) for q in qs}

    def rate(fn, imgs, reps):
        fn(imgs.subset(range(min(8, len(imgs)))))  # warm-up
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn(imgs)
            times.append(time.perf_counter() - t)
        return len(imgs) / statistics.median(times)

    rows = {}
    for q in qs:
        rows[f"dense@{q} ({px[q]} px, flip)"] = (len(images), rate(
            lambda s, q=q: dense_probs(model, s, px[q], mean, batch_size=bs, device=device,
                                       progress=False), images, repeats))
    rows[f"dense@512 ({px[512]} px, flip), one image per batch"] = (len(few), rate(
        lambda s: dense_probs(model, s, px[512], mean, batch_size=1, device=device,
                              progress=False), few, 1))
    rows[f"multi-crop@384 ({px[384]} px, 50 crops)"] = (len(few), rate(
        lambda s: multi_crop_probs(model, s, [px[384]], mean, batch_size=bs, device=device,
                                   progress=False), few, 1))
    rows[f"multi-crop {qs} ({[px[q] for q in qs]} px, 150 crops)"] = (len(few), rate(
        lambda s: multi_crop_probs(model, s, [px[q] for q in qs], mean, batch_size=bs,
                                   device=device, progress=False), few, 1))
    dense3 = 1 / sum(1 / rows[f"dense@{q} ({px[q]} px, flip)"][1] for q in qs)  # img/s, 3 scales
    mc3 = rows[f"multi-crop {qs} ({[px[q] for q in qs]} px, 150 crops)"][1]
    print(f"net D, cpu profile (width {prof.width}, crop {prof.crop}), {source}, device {device}, "
          f"{torch.get_num_threads()} threads, eval batch {bs}")
    print(f"{'protocol':58} {'images':>6} {'images/s':>9}")
    for name, (n, r) in rows.items():
        print(f"{name:58} {n:6d} {r:9.1f}")
    print(f"{'dense, 3 scales (multi-scale, from the rows above)':58} {'':6} {dense3:9.1f}")
    print(f"cost ratio multi-crop (3 scales) / dense (3 scales): {dense3 / mc3:.1f}x per image")
    return {"source": source, "device": str(device), "threads": torch.get_num_threads(),
            "images_per_s": {name: r for name, (_, r) in rows.items()},
            "dense_3_scales_images_per_s": dense3, "multi_crop_3_scales_images_per_s": mc3,
            "cost_ratio_multi_crop_vs_dense_3_scales": dense3 / mc3}


def bench_lrn(args=None, repeats: int = 7, steps: int = 5) -> dict:
    """vgg.model.LocalResponseNorm vs torch's nn.LocalResponseNorm, side by side: the layer
    alone (forward + backward at A-LRN's cpu-profile shape: batch 64, 16 channels, 64x64,
    channels-last), and whole A-LRN training steps (random data) with either layer in place.
    Medians of ``repeats``.
    """
    import statistics
    import time

    import torch
    import torch.nn.functional as F


    prof = PROFILES["cpu"]
    torch.manual_seed(0)
    layers = {"torch": torch.nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0),
              "vgg (band matmul)": LocalResponseNorm(5, 5e-4, 0.75, 2.0)}
    x0 = (torch.randn(prof.batch_size, int(64 * prof.width), prof.crop, prof.crop) * 30).to(
        memory_format=torch.channels_last)

    def median_s(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    def layer_pass(layer):
        x = x0.clone().requires_grad_()
        layer(x).sum().backward()

    model = build("A-LRN", 10, prof.width, prof.crop).to(memory_format=torch.channels_last)
    xb = torch.randn(prof.batch_size, 3, prof.crop, prof.crop).to(memory_format=torch.channels_last) * 60
    yb = torch.randint(0, 10, (prof.batch_size,))
    where = next(i for i, m in enumerate(model.features) if isinstance(m, torch.nn.LocalResponseNorm))

    def train_steps():
        for _ in range(steps):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()

    rows = {}
    for name, layer in layers.items():
        model.features[where] = layer
        rows[name] = (median_s(lambda: layer_pass(layer)) * 1e3,
                      steps * prof.batch_size / median_s(train_steps))
    print(f"LRN at the cpu profile: input {tuple(x0.shape)} channels-last, {torch.get_num_threads()} threads")
    print(f"{'layer':20} {'fwd+bwd ms':>11} {'A-LRN train img/s':>18}")
    for name, (ms, img_s) in rows.items():
        print(f"{name:20} {ms:11.1f} {img_s:18.0f}")
    return {name: {"layer_ms": ms, "train_images_per_s": img_s} for name, (ms, img_s) in rows.items()}


BENCHES = {"data": bench_data, "train": bench_train, "eval": bench_eval, "lrn": bench_lrn, "gpu": bench_gpu}  # bench_gpu: vgg/ops/gpu.py
