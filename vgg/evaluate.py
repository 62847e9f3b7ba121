"""Testing as in Sect. 3.2 and 4.1-4.3, as a registry of protocols chosen by name.

``PROTOCOLS`` maps a name to a ``Protocol``: a small function of an ``Evaluation`` (one
model on one image set) and the test scales it uses, returning per-image soft-max outputs
``float32 [images, classes]`` (and, for a diagnostic, extra numbers for its record).
``evaluate_run`` loops over the names a run asks for (``vgg.spec``). A changed protocol
gets a new name, so results already on record keep their meaning.

- dense (Sect. 3.2): the image rescaled to short side Q runs through the fully
  convolutional net (``vgg.to_dense``); the class-score map is averaged, and the soft-max
  averaged with the flipped image's. Table 3.
- centre-crop: one centre crop at Q, no flip (Sect. 4.1's B vs its 5x5 form).
- multi-scale (Sect. 4.2): dense soft-max averaged over three Q. Table 4.
- multi-crop (Sect. 3.2, 4.3): per Q a 5x5 grid of crops, each also flipped, 150 in all.
- multi-crop+dense (Table 5): the two averaged.
- dense-softmax: dense with the soft-max taken per window and then averaged (the paper
  averages class posteriors; ``dense`` averages the scores first).
- windows-as-crops: each window of the dense pass cut out and scored as a separate crop
  (zero padding at its border, as in training), the crops' soft-max averaged; its record
  also has the error per window in the dense pass and as a crop (the dense-context
  penalty, protocol chapter).

Scales inside this module are real pixels; ``evaluate_run`` converts the paper's Q.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import normalize, rescale
from .model import DOWNSAMPLE, VGG, to_dense
from .profiles import Profile, test_scales
from .stats import bootstrap_ci, errors, topk_correct

GRID = 5  # Sect. 3.2: a 5x5 regular grid of crops per scale


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", disable=None if enabled else True, leave=False)


def _prepare(model: VGG, images, q: int | Sequence[int], device) -> tuple[list[torch.Tensor], torch.device]:
    """The uint8 [3,H,W] images, checked against the model and the test scales, and the
    device with the model moved there in channels_last (the inputs' layout; a contiguous
    model runs ~1.5x slower on them on CPU)."""
    if not isinstance(model, VGG):
        raise TypeError(f"evaluation takes a model made by vgg.build, got {type(model).__name__}")
    imgs = list(getattr(images, "images", images))
    if not imgs:
        raise ValueError("no images to evaluate: the image set is empty")
    if not all(isinstance(im, torch.Tensor) and im.dtype == torch.uint8 and im.ndim == 3 for im in imgs):
        raise ValueError("evaluation takes uint8 [3,H,W] tensors (as in vgg.data.Images)")
    for s in [q] if isinstance(q, (int, np.integer)) else q:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < model.crop:
            raise ValueError(f"test scale Q = {s!r} real px: it must be an integer >= the model's crop "
                             f"({model.crop} px)")
    device = torch.device(device)
    model.to(device, memory_format=torch.channels_last)
    return imgs, device


def _input(x: torch.Tensor, mean, device) -> torch.Tensor:
    return normalize(x, torch.as_tensor(mean, dtype=torch.float32)).to(device).contiguous(
        memory_format=torch.channels_last)


def _flip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1).contiguous(memory_format=torch.channels_last)


def _by_shape(imgs: list[torch.Tensor], q: int, batch_size: int) -> list[list[int]]:
    """Image indices grouped by their size once rescaled to short side q (from
    ``vgg.data.rescale`` itself, so the rounding is data.py's), chunked to batch_size."""
    sizes, groups = {}, defaultdict(list)
    for i, im in enumerate(imgs):
        hw = tuple(im.shape[-2:])
        if hw not in sizes:
            sizes[hw] = tuple(rescale(torch.zeros(3, *hw, dtype=torch.uint8), q).shape[-2:])
        groups[sizes[hw]].append(i)
    return [idx[j:j + batch_size] for _, idx in sorted(groups.items(), key=lambda kv: -len(kv[1]))
            for j in range(0, len(idx), batch_size)]


def centre_windows(x: torch.Tensor, stride: int = DOWNSAMPLE) -> torch.Tensor:
    """Crop images ``[N, C, H, W]`` to the largest multiple of ``stride`` in each side, centred.

    deviation: Sect. 3.2 runs the dense net on the whole rescaled image. Its windows tile
    the conv5 grid from the top-left corner, and the pixels past the last multiple of the
    net's stride lie outside every window. At the paper's sizes every Q is a multiple of 32
    and this is a no-op on the short side; at the cpu profile's (Q = 256 -> 73 px) the
    windows sat off-centre, which cost dense evaluation 0.6-7 points of top-1 (protocol
    chapter). Zero padding up to the next multiple instead was worse (C-S384-s0: 35.8% vs 26.6%)."""
    h, w = x.shape[-2:]
    hh, ww = stride * (h // stride), stride * (w // stride)
    if hh == 0 or ww == 0:
        raise ValueError(f"an image of {h}x{w} px is smaller than the net's stride ({stride} px)")
    top, left = (h - hh) // 2, (w - ww) // 2
    return x[..., top:top + hh, left:left + ww]


class _inference:
    """model.eval() and inference mode for the block; the model's mode is restored after."""

    def __init__(self, model):
        self.model, self.mode = model, torch.inference_mode()

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        self.mode.__enter__()

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        self.model.train(self.was_training)


def dense_probs(model: VGG, images, q: int, mean, *, flip: bool = True, softmax_first: bool = False,
                batch_size: int = 64, device="cpu", progress: bool = True) -> np.ndarray:
    """Dense evaluation at real scale ``q`` (Sect. 3.2): soft-max outputs ``float32 [N, classes]``.

    Whole images rescaled to short side q, trimmed by ``centre_windows``, through the fully
    convolutional net; the score map is averaged spatially (``softmax_first``: the soft-max
    of each window is averaged instead), and with ``flip`` averaged with the flipped image's."""
    imgs, device = _prepare(model, images, q, device)
    dense = to_dense(model)

    def posterior(x):
        if softmax_first:
            return F.softmax(dense.score_map(x).float(), dim=1).mean(dim=(-2, -1))
        return F.softmax(dense(x).float(), dim=1)

    out = np.empty((len(imgs), model.num_classes), dtype=np.float32)
    with _inference(model), _progress(len(imgs), f"dense Q={q}px", progress) as bar:
        for idx in _by_shape(imgs, q, batch_size):
            x = centre_windows(_input(torch.stack([rescale(imgs[i], q) for i in idx]), mean, device))
            p = posterior(x)
            out[idx] = ((p + posterior(_flip(x))) / 2 if flip else p).cpu().numpy()
            bar.update(len(idx))
    return out


def windows_as_crops(model: VGG, images, q: int, mean, *, batch_size: int = 64, device="cpu",
                     progress: bool = True) -> tuple[np.ndarray, dict]:
    """Every window of the dense pass scored twice, no flip. *In the dense pass* its convs see
    the neighbouring image across the window's border; *as a crop* the same region is cut out
    (``crop`` px, one stride of 32 apart) and run through the standard net, zero-padded as in
    training. The paper names this difference as why multi-crop complements dense evaluation
    (Sect. 3.2). Returns the crops' soft-max averaged per image and the window-level top-1
    errors in percent (``window_in_dense``, ``window_as_crop``), the map-averaged dense
    (``dense``, no flip) and ``centre_crop`` errors, ``n_windows``."""
    imgs, device = _prepare(model, images, q, device)
    labels = torch.as_tensor(getattr(images, "labels"))
    dense, crop = to_dense(model), model.crop
    out = np.empty((len(imgs), model.num_classes), dtype=np.float32)
    wrong = dict(window_in_dense=0, window_as_crop=0, dense=0, centre_crop=0)
    n_windows = 0
    with _inference(model), _progress(len(imgs), f"windows as crops Q={q}px", progress) as bar:
        for idx in _by_shape(imgs, q, batch_size):
            y = labels[idx].to(device)
            full = _input(torch.stack([rescale(imgs[i], q) for i in idx]), mean, device)
            x = centre_windows(full)
            scores = dense.score_map(x)  # [B, classes, h, w]: one column per window
            b, k, h, w = scores.shape
            crops = x.unfold(2, crop, DOWNSAMPLE).unfold(3, crop, DOWNSAMPLE)  # [B, 3, h, w, crop, crop]
            crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(b * h * w, 3, crop, crop)
            crop_scores = torch.cat([model(c) for c in crops.split(batch_size)]).reshape(b, h * w, k)
            win_scores = scores.flatten(2).transpose(1, 2)  # [B, h*w, classes]
            wrong["window_in_dense"] += int((win_scores.argmax(-1) != y[:, None]).sum())
            wrong["window_as_crop"] += int((crop_scores.argmax(-1) != y[:, None]).sum())
            wrong["dense"] += int((scores.mean(dim=(-2, -1)).argmax(-1) != y).sum())
            centre = torch.stack([centre_crop(im, crop) for im in full])
            wrong["centre_crop"] += int((model(centre).argmax(-1) != y).sum())
            out[idx] = F.softmax(crop_scores.float(), -1).mean(1).cpu().numpy()
            n_windows += b * h * w
            bar.update(len(idx))
    extra = {k: 100.0 * v / (n_windows if k.startswith("window") else len(imgs)) for k, v in wrong.items()}
    return out, dict(extra, n_windows=n_windows)


def crop_grid(h: int, w: int, crop: int, n: int = GRID) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of a regular n x n grid of crop x crop crops inside an h x w
    image, row by row, corners included (n >= 2); n = 1 is the centre crop."""
    if n < 1:
        raise ValueError(f"grid size n must be >= 1, got {n}")
    if crop < 1 or h < crop or w < crop:
        raise ValueError(f"a {crop}x{crop} crop does not fit in a {h}x{w} image: the image "
                         f"must be at least the crop on both sides")
    if n == 1:
        return [((h - crop) // 2, (w - crop) // 2)]
    ys = [int(v) for v in np.rint(np.linspace(0, h - crop, n))]
    xs = [int(v) for v in np.rint(np.linspace(0, w - crop, n))]
    return [(y, x) for y in ys for x in xs]


def centre_crop(img: torch.Tensor, crop: int) -> torch.Tensor:
    """The centre crop x crop crop of one image [3, H, W] (the grid of one)."""
    (y, x), = crop_grid(*img.shape[-2:], crop, 1)
    return img[..., y:y + crop, x:x + crop]


def multi_crop_probs(model: VGG, images, qs: Sequence[int], mean, *, flip: bool = True, grid: int = GRID,
                     batch_size: int = 256, device="cpu", progress: bool = True) -> np.ndarray:
    """Multi-crop evaluation (Sect. 3.2, 4.3): ``float32 [N, classes]``. Per scale q (real px)
    a ``grid x grid`` regular grid of crop-sized crops of the rescaled image, each also
    flipped (50 per scale); the standard net's soft-max averaged over all crops and scales.
    ``batch_size`` counts network inputs; crops of several images share a batch."""
    qs = list(qs)
    imgs, device = _prepare(model, images, qs, device)
    if not qs:
        raise ValueError("no test scales given")
    sums = torch.zeros(len(imgs), model.num_classes, dtype=torch.float64)
    counts = torch.zeros(len(imgs), dtype=torch.float64)
    buf, owner = [], []

    def flush():
        if buf:
            x, who = _input(torch.cat(buf), mean, device), torch.cat(owner)
            p = F.softmax(model(x).float(), dim=1)
            if flip:
                p, who = torch.cat([p, F.softmax(model(_flip(x)).float(), dim=1)]), torch.cat([who, who])
            sums.index_add_(0, who, p.double().cpu())
            counts.index_add_(0, who, torch.ones(len(who), dtype=torch.float64))
            buf.clear()
            owner.clear()

    per_batch = max(1, batch_size // (2 if flip else 1))  # flips double each forward's inputs
    with _inference(model), _progress(len(imgs) * len(qs), f"multi-crop {qs}px", progress) as bar:
        for q in qs:
            pending = 0
            for i, im in enumerate(imgs):
                img = rescale(im, q)
                c = torch.stack([img[:, y:y + model.crop, x:x + model.crop]
                                 for y, x in crop_grid(*img.shape[-2:], model.crop, grid)])
                buf.append(c)
                owner.append(torch.full((len(c),), i, dtype=torch.long))
                pending += len(c)
                if pending >= per_batch:
                    flush()
                    pending = 0
                bar.update(1)
            flush()
    return (sums / counts[:, None]).float().numpy()


def combine(*probs: np.ndarray) -> np.ndarray:
    """Average of soft-max outputs (multi-scale, multi-crop + dense, fusion)."""
    if not probs:
        raise ValueError("combine needs at least one array of softmax outputs")
    arrs = [np.asarray(p, dtype=np.float32) for p in probs]
    if len({a.shape for a in arrs}) != 1:
        raise ValueError(f"combine needs outputs of the same images and classes; got shapes "
                         f"{sorted({a.shape for a in arrs})}")
    return arrs[0] if len(arrs) == 1 else np.mean(np.stack(arrs), axis=0, dtype=np.float64).astype(np.float32)


# --- the registry ------------------------------------------------------------------------

class Evaluation:
    """One model on one image set: what the protocols share. Dense outputs at a scale and the
    multi-crop outputs are computed once and reused (multi-scale contains dense@Q; Table 5's
    combination contains both); each protocol is charged the whole cost of what it uses."""

    def __init__(self, model: VGG, images, mean, *, batch_size: int = 64, device="cpu", progress=True):
        self.model, self.images, self.mean = model, images, mean
        self.kw = dict(batch_size=batch_size, device=device, progress=progress)
        self._memo: dict = {}
        self.spent = 0.0

    def cached(self, key, compute: Callable):
        if key not in self._memo:
            t = time.perf_counter()
            value = compute()
            self._memo[key] = (value, time.perf_counter() - t)
        value, seconds = self._memo[key]
        self.spent += seconds
        return value

    def dense(self, q: int) -> np.ndarray:
        return self.cached(("dense", q), lambda: dense_probs(self.model, self.images, q, self.mean, **self.kw))

    def multi_crop(self, qs: list[int]) -> np.ndarray:
        kw = dict(self.kw, batch_size=max(self.kw["batch_size"], 2 * GRID ** 2))
        return self.cached(("multi-crop", tuple(qs)),
                           lambda: multi_crop_probs(self.model, self.images, qs, self.mean, **kw))


def _merge_windows(parts: list[tuple[int, dict]]) -> dict:
    """windows-as-crops' numbers over shards of the image set: rates per window weighted by the
    windows, rates per image by the images."""
    n_win, n_img = sum(e["n_windows"] for _, e in parts), sum(n for n, _ in parts)
    out = {k: sum(e[k] * (e["n_windows"] if k.startswith("window") else n) for n, e in parts)
           / (n_win if k.startswith("window") else n_img) for k in parts[0][1] if k != "n_windows"}
    return dict(out, n_windows=n_win)


@dataclass(frozen=True)
class Protocol:
    fn: Callable  # (Evaluation, [Q in real px]) -> probs, or (probs, extra numbers for the record)
    scales: str  # "single": Table 3's one Q (the name gets "@Q"); "multi": Table 4's three
    doc: str
    merge: Callable | None = None  # the extra numbers of shards ([(images, extra)]) as one set's


PROTOCOLS: dict[str, Protocol] = {
    "dense": Protocol(lambda ev, qs: ev.dense(qs[0]), "single", "dense, flip averaged (Sect. 3.2; Table 3)"),
    "centre-crop": Protocol(
        lambda ev, qs: ev.cached(("centre", qs[0]), lambda: multi_crop_probs(
            ev.model, ev.images, qs, ev.mean, flip=False, grid=1, **ev.kw)),
        "single", "one centre crop, no flip (Sect. 4.1, B vs B-5x5)"),
    "multi-scale": Protocol(lambda ev, qs: combine(*[ev.dense(q) for q in qs]), "multi",
                            "dense averaged over three Q (Sect. 4.2; Table 4)"),
    "multi-crop": Protocol(lambda ev, qs: ev.multi_crop(qs), "multi",
                           "150 crops: 5x5 grid x 2 flips x 3 Q (Sect. 4.3; Table 5)"),
    "multi-crop+dense": Protocol(lambda ev, qs: combine(ev.multi_crop(qs), combine(*[ev.dense(q) for q in qs])),
                                 "multi", "multi-crop and multi-scale dense averaged (Table 5)"),
    "dense-softmax": Protocol(
        lambda ev, qs: ev.cached(("dense-softmax", qs[0]), lambda: dense_probs(
            ev.model, ev.images, qs[0], ev.mean, softmax_first=True, **ev.kw)),
        "single", "dense with the soft-max of each window averaged (diagnostic)"),
    "windows-as-crops": Protocol(
        lambda ev, qs: ev.cached(("windows", qs[0]), lambda: windows_as_crops(
            ev.model, ev.images, qs[0], ev.mean, **ev.kw)),
        "single", "each dense window scored as a separate crop, no flip (diagnostic)", _merge_windows),
}


BASE = ("dense", "centre-crop", "multi-scale")  # Tables 3-4 and Sect. 4.1's centre crop
MULTI_CROP = ("multi-crop", "multi-crop+dense")  # Table 5 (150 crops: slow)


def result_key(name: str, train_scale: str) -> str:
    """The name a protocol's result is stored under: ``dense@384`` for a one-scale protocol
    (Q of Table 3 for this training scale), the protocol's name otherwise."""
    if PROTOCOLS[name].scales == "single":
        return f"{name}@{test_scales(train_scale)['single'][0]}"
    return name


def _entry(probs: np.ndarray, labels, scales: list[int], scales_px: list[int], seconds: float) -> dict:
    err = errors(probs, labels)
    _, lo, hi = bootstrap_ci(topk_correct(probs, labels, 1))
    return {"top1_err": round(err["top1_err"], 2), "top5_err": round(err["top5_err"], 2),
            "top1_ci95": [round(lo, 2), round(hi, 2)], "scales": list(scales), "scales_px": list(scales_px),
            "n_images": len(probs), "seconds": round(seconds, 2),
            "images_per_s": round(len(probs) / seconds, 2) if seconds > 0 else None}


def evaluate_run(model: VGG, images, mean, *, train_scale: str, profile: Profile, protocols: Sequence[str],
                 device="cpu", batch_size: int | None = None, progress: bool = True, shards=None
                 ) -> tuple[dict, dict[str, np.ndarray]]:
    """Every protocol of ``protocols`` (names of ``PROTOCOLS``) at the paper's test scales for
    ``train_scale`` (``vgg.profiles.test_scales``), converted to real px with ``profile``.
    Returns ({result key: record for metrics.json}, {result key: soft-max outputs}).

    ``shards`` (``vgg.distributed.Shards``, under torchrun): this process evaluates its shard of
    ``images`` only; outputs, extra numbers and times are gathered, so every rank returns the
    whole set's results (``seconds``: the slowest rank's)."""
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; valid: {', '.join(PROTOCOLS)}")
    if profile.crop != model.crop:
        raise ValueError(f"profile {profile.name!r} has crop {profile.crop} px but the model takes "
                         f"{model.crop} px: evaluate with the profile it was built for")
    labels = np.asarray(getattr(images, "labels"), dtype=np.int64).ravel()
    mine = images if shards is None else images.subset(shards.idx)
    ev = Evaluation(model, mine, mean, batch_size=batch_size or profile.eval_batch_size, device=device,
                    progress=progress)
    records, probs = {}, {}
    for name in protocols:
        proto = PROTOCOLS[name]
        qs = test_scales(train_scale)[proto.scales]
        ev.spent = 0.0
        out = proto.fn(ev, [profile.px(q) for q in qs])
        p, extra = out if isinstance(out, tuple) else (out, {})
        if shards is not None:
            p, ev.spent = shards.rows(p), max(shards.objects(ev.spent))
            extra = proto.merge(shards.objects((len(shards.idx), extra))) if extra else extra
        key = result_key(name, train_scale)
        probs[key] = p
        records[key] = dict(_entry(p, labels, qs, [profile.px(q) for q in qs], ev.spent), protocol=name, **extra)
        if progress:
            print(f"{key}: top-1 error {records[key]['top1_err']:.2f}% ({ev.spent:.0f} s)", flush=True)
    return records, probs


__all__ = ["PROTOCOLS", "Protocol", "Evaluation", "evaluate_run", "result_key", "dense_probs",
           "windows_as_crops", "multi_crop_probs", "crop_grid", "centre_crop", "centre_windows", "combine"]
