"""Testing as in Sect. 3.2 and 4.1-4.4: dense, multi-scale, multi-crop, their combination,
and model fusion. Each protocol is one small function returning per-image softmax outputs
(``float32 [images, classes]``, in the input order); ``evaluate_run`` runs every protocol
a run feeds and ``save_probs``/``load_probs``/``fuse`` carry the outputs to fusion.

Every scale argument of the protocol functions is in REAL pixels (the rescaled image's
short side); ``evaluate_run`` takes the paper's Q and converts with the profile.

- Dense (Sect. 3.2): the image is isotropically rescaled so its short side is Q, the
  fully convolutional net (``vgg.to_dense``) gives a class-score map that is averaged
  spatially; the horizontally flipped image is run too and the two softmax outputs
  averaged.
- Multi-scale (Sect. 4.2): softmax outputs averaged over several Q.
- Multi-crop (Sect. 3.2, 4.3): per scale a 5x5 regular grid of crop-sized crops, each
  also flipped (50 per scale, 150 over three), softmax of the standard net averaged.
- Multi-crop + dense (Sect. 4.3, Table 5): the two protocols' softmax outputs averaged.
- Fusion (Sect. 4.4): softmax outputs of several nets averaged.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import io as vio
from .data import normalize, rescale
from .model import DOWNSAMPLE, VGG, to_dense
from .profiles import test_scales
from .stats import bootstrap_ci, errors, topk_correct

__all__ = ["dense_probs", "dense_context", "multi_scale_probs", "crop_grid", "multi_crop_probs", "combine",
           "save_probs", "load_probs", "fuse", "evaluate_run", "PROTOCOLS"]

PROTOCOLS = ("dense@<Q>", "centre-crop@<Q>", "multi-scale", "multi-crop", "multi-crop+dense")
GRID = 5  # Sect. 3.2: a 5x5 regular grid of crops per scale
# The evaluation protocol's version, stored in metrics.json: a run evaluated under an older
# one is re-evaluated by `python -m vgg reevaluate`. 1: dense windows from the top-left
# corner; 2: dense windows centred (centre_windows).
EVAL_VERSION = 2


# --- input handling -------------------------------------------------------------------

def _image_list(images) -> list[torch.Tensor]:
    """The uint8 [3,H,W] tensors of a vgg.data.Images (or of a plain sequence of them)."""
    imgs = list(getattr(images, "images", images))
    if not imgs:
        raise ValueError("no images to evaluate: the image set is empty")
    for i, im in enumerate(imgs):
        if not (isinstance(im, torch.Tensor) and im.dtype == torch.uint8 and im.ndim == 3
                and im.shape[0] == 3):
            what = (f"{im.dtype} {tuple(im.shape)}" if isinstance(im, torch.Tensor)
                    else type(im).__name__)
            raise ValueError(f"image {i} is {what}; evaluation takes uint8 [3,H,W] tensors "
                             f"(as in vgg.data.Images)")
    return imgs


def _check_scales(qs: Iterable[int], model: VGG, what: str = "test scale") -> list[int]:
    qs = [qs] if isinstance(qs, (int, np.integer)) else list(qs)
    if not qs:
        raise ValueError(f"no {what}s given: pass at least one Q in real pixels "
                         f"(>= the model's crop, {model.crop})")
    for q in qs:
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
            raise ValueError(f"{what} {q!r} must be an integer number of real pixels")
        if q < model.crop:
            raise ValueError(f"{what} Q = {q} real px is smaller than the model's crop "
                             f"({model.crop} px): the image's short side must be at least the "
                             f"crop; valid scales are Q >= {model.crop}")
    return [int(q) for q in qs]


def _check_model(model) -> VGG:
    if not isinstance(model, VGG):
        raise TypeError(f"evaluation takes a model made by vgg.build, got {type(model).__name__}")
    return model


def _mean_tensor(mean) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mean, dtype=np.float32))
    if m.shape != (3,):
        raise ValueError(f"mean must be 3 per-channel values (0-255), got shape {tuple(m.shape)}")
    return m


def _normalize(x: torch.Tensor, mean: torch.Tensor, device) -> torch.Tensor:
    return normalize(x, mean).to(device).contiguous(memory_format=torch.channels_last)


def _flip(x: torch.Tensor) -> torch.Tensor:
    """Horizontal flip of a batch [N,C,H,W] (the width axis), kept channels_last."""
    return x.flip(-1).contiguous(memory_format=torch.channels_last)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", disable=None if enabled else True, leave=False)


class _eval_mode:
    """model.eval() and inference mode for the block; the model's mode is restored after."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        self.inference = torch.inference_mode()
        self.inference.__enter__()

    def __exit__(self, *exc):
        self.inference.__exit__(*exc)
        self.model.train(self.was_training)


def _device(model: VGG, device) -> torch.device:
    """Move the model to ``device`` in channels_last (in place): the inputs are channels_last
    (vgg.data.normalize) and a contiguous-format model runs ~1.5x slower on them on CPU."""
    device = torch.device(device)
    model.to(device, memory_format=torch.channels_last)
    return device


# --- dense and multi-scale (Sect. 3.2, 4.2) --------------------------------------------

def _rescaled_shapes(imgs: list[torch.Tensor], q: int) -> list[tuple[int, int]]:
    """The (h, w) each image has once rescaled to short side q, from vgg.data.rescale itself
    (one tiny call per distinct input size, so the rounding is always data.py's)."""
    cache: dict[tuple[int, int], tuple[int, int]] = {}
    out = []
    for im in imgs:
        hw = tuple(im.shape[-2:])
        if hw not in cache:
            cache[hw] = tuple(rescale(torch.zeros(3, *hw, dtype=torch.uint8), q).shape[-2:])
        out.append(cache[hw])
    return out


def _batches_by_shape(shapes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices grouped by equal shape (largest group first), chunked to batch_size."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, s in enumerate(shapes):
        groups[s].append(i)
    out = []
    for _, idx in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        out += [idx[j:j + batch_size] for j in range(0, len(idx), batch_size)]
    return out


def centre_windows(x: torch.Tensor, stride: int = DOWNSAMPLE) -> torch.Tensor:
    """Crop images ``[N, C, H, W]`` to the largest multiple of ``stride`` in each side,
    centred, so the dense net's windows tile the image symmetrically.

    deviation: Sect. 3.2 runs the dense net on the whole rescaled image. Its windows tile
    the conv5 grid from the top-left corner, and the pixels past the last multiple of the
    net's stride (32) lie outside every window (``score_map_side``). At the paper's sizes
    every test scale is a multiple of 32 and this is a no-op on the short side; at the cpu
    profile's (Q = 256 -> 73 px, 384 -> 110 px) the windows are one or two per side and sit
    off-centre, which cost dense evaluation 0.6-7 points of top-1 against the same windows
    centred, most at Q = 384 (seed-0 runs re-evaluated, see the protocol chapter). Cropping
    the odd pixels equally from both edges restores the paper's symmetric tiling; zero
    padding up to the next multiple instead was worse (C-S384-s0: 35.8% against 26.6%)."""
    h, w = x.shape[-2:]
    hh, ww = stride * (h // stride), stride * (w // stride)
    if hh == 0 or ww == 0:
        raise ValueError(f"an image of {h}x{w} px is smaller than the net's stride ({stride} px)")
    top, left = (h - hh) // 2, (w - ww) // 2
    return x[..., top:top + hh, left:left + ww]


def dense_probs(model: VGG, images, q: int, mean, *, flip: bool = True, batch_size: int = 64,
                device="cpu", progress: bool = True) -> np.ndarray:
    """Dense evaluation at one scale (Sect. 3.2): softmax outputs ``float32 [N, classes]``.

    Each whole image is rescaled so its short side is ``q`` (real pixels), normalised,
    trimmed to a multiple of the net's stride around its centre (``centre_windows``) and
    run through the fully convolutional net, whose class-score map is averaged spatially;
    with ``flip`` the horizontally flipped image is run too and the two softmax outputs
    averaged. Images of equal rescaled size are batched together.
    """
    _check_model(model)
    (q,) = _check_scales([q], model)
    imgs = _image_list(images)
    mean_t = _mean_tensor(mean)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _device(model, device)
    dense = to_dense(model)
    out = np.empty((len(imgs), model.num_classes), dtype=np.float32)
    batches = _batches_by_shape(_rescaled_shapes(imgs, q), batch_size)
    with _eval_mode(model), _progress(len(imgs), f"dense Q={q}px", progress) as bar:
        for idx in batches:
            x = centre_windows(_normalize(torch.stack([rescale(imgs[i], q) for i in idx]), mean_t, device))
            p = F.softmax(dense(x).float(), dim=1)
            if flip:
                p = (p + F.softmax(dense(_flip(x)).float(), dim=1)) / 2
            out[idx] = p.cpu().numpy()
            bar.update(len(idx))
    return out


def dense_context(model: VGG, images, q: int, mean, *, batch_size: int = 64, device="cpu",
                  progress: bool = True) -> dict:
    """Why dense evaluation can lose to crops at a small scale: every window of the dense
    net (Sect. 3.2) scored twice. *In the dense pass* its convolutions see the neighbouring
    image across the window's border; *as a crop* the same region is cut out and run through
    the standard net, with the zero padding of training at its border. The paper names this
    difference as why multi-crop complements dense evaluation (Sect. 3.2: crops are
    zero-padded, dense evaluation sees real context). At its sizes the crop's last feature
    map is 7x7; at the cpu profile's it is 2x2, so every position of it is at the border.

    Images are rescaled to short side ``q`` (real pixels) and trimmed as in ``dense_probs``
    (``centre_windows``); no flip. Returns top-1 errors in percent: ``window_in_dense`` and
    ``window_as_crop`` (over all windows of all images), ``dense`` (the score map averaged:
    dense evaluation without the flip), ``crops_on_grid`` (the window crops' softmax
    outputs averaged, as multi-crop evaluation averages its crops), ``centre_crop``; and
    ``n_images``, ``n_windows``."""
    _check_model(model)
    (q,) = _check_scales([q], model)
    imgs = _image_list(images)
    labels = getattr(images, "labels", None)
    if labels is None or len(labels) != len(imgs):
        raise ValueError("dense_context scores against labels: pass a vgg.data.Images, not bare images")
    labels = torch.as_tensor(labels)
    mean_t, device = _mean_tensor(mean), _device(model, device)
    dense, crop = to_dense(model), model.crop
    wrong = dict(window_in_dense=0, window_as_crop=0, dense=0, crops_on_grid=0, centre_crop=0)
    n_windows = 0
    with _eval_mode(model), _progress(len(imgs), f"dense context Q={q}px", progress) as bar:
        for idx in _batches_by_shape(_rescaled_shapes(imgs, q), batch_size):
            y = labels[idx].to(device)
            full = _normalize(torch.stack([rescale(imgs[i], q) for i in idx]), mean_t, device)
            x = centre_windows(full)
            scores = dense.score_map(x)  # [B, classes, h, w]: one column per window
            b, k, h, w = scores.shape
            # The same windows as crops: 32 px apart (the net's stride), crop px wide.
            crops = x.unfold(2, crop, DOWNSAMPLE).unfold(3, crop, DOWNSAMPLE)  # [B, 3, h, w, crop, crop]
            crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(b * h * w, 3, crop, crop)
            # in chunks of batch_size crops: a batch of images holds h*w times as many
            crop_scores = torch.cat([model(c) for c in crops.split(batch_size)]).reshape(b, h * w, k)
            win_scores = scores.flatten(2).transpose(1, 2)  # [B, h*w, classes]
            wrong["window_in_dense"] += int((win_scores.argmax(-1) != y[:, None]).sum())
            wrong["window_as_crop"] += int((crop_scores.argmax(-1) != y[:, None]).sum())
            wrong["dense"] += int((scores.mean(dim=(-2, -1)).argmax(-1) != y).sum())
            wrong["crops_on_grid"] += int((F.softmax(crop_scores, -1).mean(1).argmax(-1) != y).sum())
            centre = torch.stack([centre_crop(im, crop) for im in full])
            wrong["centre_crop"] += int((model(centre).argmax(-1) != y).sum())
            n_windows += b * h * w
            bar.update(len(idx))
    per = {k: (n_windows if k.startswith("window") else len(imgs)) for k in wrong}
    return {k: 100.0 * v / per[k] for k, v in wrong.items()} | dict(n_images=len(imgs), n_windows=n_windows)


def score_map_side(side: int, crop: int, pools: int = 5) -> tuple[int, int]:
    """(class-score map positions, image pixels outside every window) along one image side
    of ``side`` real pixels, for a net trained on ``crop``-pixel crops.

    Each of the ``pools`` 2x2 max-pools halves the map and drops an odd last row (floor), so
    conv5 has side // 2**pools positions; the first FC layer, a conv of crop / 2**pools,
    slides over them. The windows tile the image from the top-left corner, so the last
    side - 2**pools * (side // 2**pools) pixels lie outside all of them and reach the scores
    only through the edges of the convs' receptive fields (the flipped pass puts them on
    the other side). At the paper's Q = 384 the map is 6 positions wide; at the cpu
    profile's (110 px) it is 2, and at Q = 256 (73 px) one window of 64 px: there dense
    evaluation is little more than an off-centre crop and its mirror."""
    stride = 2 ** pools
    if crop % stride:
        raise ValueError(f"crop {crop} px is not a multiple of the net's stride {stride}")
    if side < crop:
        raise ValueError(f"an image side of {side} px is smaller than the crop ({crop} px)")
    cells = side // stride
    return cells - crop // stride + 1, side - stride * cells


def multi_scale_probs(model: VGG, images, qs: Sequence[int], mean, *, flip: bool = True,
                      batch_size: int = 64, device="cpu", progress: bool = True) -> np.ndarray:
    """Multi-scale dense evaluation (Sect. 4.2): dense softmax outputs averaged over ``qs``."""
    _check_model(model)
    qs = _check_scales(qs, model)
    _image_list(images)
    return combine(*[dense_probs(model, images, q, mean, flip=flip, batch_size=batch_size,
                                 device=device, progress=progress) for q in qs])


# --- multi-crop (Sect. 3.2, 4.3) --------------------------------------------------------

def crop_grid(h: int, w: int, crop: int, n: int = GRID) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of a regular n x n grid of crop x crop crops inside an h x w
    image, row by row; the four corners are included (n >= 2). n = 1 is the centre crop."""
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
    return img[:, y:y + crop, x:x + crop]


def _crops(img: torch.Tensor, crop: int, n: int = GRID) -> torch.Tensor:
    """The n x n grid of crops of one image, uint8 [n*n, 3, crop, crop]."""
    h, w = img.shape[-2:]
    return torch.stack([img[:, y:y + crop, x:x + crop] for y, x in crop_grid(h, w, crop, n)])


def multi_crop_probs(model: VGG, images, qs: Sequence[int], mean, *, crop: int | None = None,
                     flip: bool = True, grid: int = GRID, batch_size: int = 256, device="cpu",
                     progress: bool = True) -> np.ndarray:
    """Multi-crop evaluation (Sect. 3.2, 4.3): ``float32 [N, classes]``.

    Per scale q (real px) the rescaled image gives a ``grid x grid`` regular grid of
    ``crop``-sized crops, each also flipped: 50 crops per scale, 150 over three. The
    standard (crop-size) net's softmax outputs are averaged over all crops and scales.
    ``batch_size`` counts network inputs (crops); crops of several images share a batch.
    """
    _check_model(model)
    crop = model.crop if crop is None else crop
    if crop != model.crop:
        raise ValueError(f"crop {crop} differs from the model's input size {model.crop}: "
                         f"multi-crop runs the standard net on crop-sized inputs")
    qs = _check_scales(qs, model)
    imgs = _image_list(images)
    mean_t = _mean_tensor(mean)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _device(model, device)
    sums = torch.zeros(len(imgs), model.num_classes, dtype=torch.float64)
    counts = torch.zeros(len(imgs), dtype=torch.float64)
    buf: list[torch.Tensor] = []
    owner: list[torch.Tensor] = []

    def flush():
        if not buf:
            return
        x = _normalize(torch.cat(buf), mean_t, device)
        who = torch.cat(owner)
        p = F.softmax(model(x).float(), dim=1)
        if flip:
            p = torch.cat([p, F.softmax(model(_flip(x)).float(), dim=1)])
            who = torch.cat([who, who])
        sums.index_add_(0, who, p.double().cpu())
        counts.index_add_(0, who, torch.ones(len(who), dtype=torch.float64))
        buf.clear()
        owner.clear()

    per_batch = max(1, batch_size // (2 if flip else 1))  # flips double each forward's inputs
    with _eval_mode(model), _progress(len(imgs) * len(qs), f"multi-crop {qs}px", progress) as bar:
        for q in qs:
            pending = 0
            for i, im in enumerate(imgs):
                c = _crops(rescale(im, q), crop, grid)
                buf.append(c)
                owner.append(torch.full((len(c),), i, dtype=torch.long))
                pending += len(c)
                if pending >= per_batch:
                    flush()
                    pending = 0
                bar.update(1)
            flush()
    return (sums / counts[:, None]).float().numpy()


# --- combining softmax outputs (Sect. 4.2-4.4) ------------------------------------------

def combine(*probs: np.ndarray) -> np.ndarray:
    """Average of softmax outputs (multi-scale, multi-crop + dense of Table 5, fusion)."""
    if not probs:
        raise ValueError("combine needs at least one array of softmax outputs")
    arrs = [np.asarray(p, dtype=np.float32) for p in probs]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"combine needs outputs of the same images and classes; got shapes "
                         f"{sorted(shapes)}")
    if len(arrs) == 1:
        return arrs[0]
    return np.mean(np.stack(arrs), axis=0, dtype=np.float64).astype(np.float32)


# --- saved outputs and fusion (Sect. 4.4) -----------------------------------------------

_PROBS = "probs/"


def save_probs(path, ids: Sequence[str], labels, classes: Sequence[str],
               probs: dict[str, np.ndarray]) -> None:
    """Write one .npz atomically: float16 softmax outputs per protocol key (``probs/<key>``)
    plus ``ids``, ``labels`` and ``classes``, so runs can be fused later without rerunning."""
    ids = [str(i) for i in ids]
    classes = [str(c) for c in classes]
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if len(labels) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels")
    if not probs:
        raise ValueError("no protocols to save: probs is empty")
    arrays = {"ids": np.array(ids, dtype=str), "labels": labels,
              "classes": np.array(classes, dtype=str)}
    for key, p in probs.items():
        p = np.asarray(p)
        if p.shape != (len(ids), len(classes)):
            raise ValueError(f"probs[{key!r}] has shape {p.shape}; expected (images, classes) = "
                             f"({len(ids)}, {len(classes)})")
        if not np.isfinite(p).all():
            raise ValueError(f"probs[{key!r}] has non-finite values")
        arrays[_PROBS + key] = p.astype(np.float16)
    with vio.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_probs(path) -> dict:
    """Read ``save_probs``' file: {"ids": list, "labels": int64 array, "classes": list,
    "probs": {key: float32 array}} (the stored float16 values, widened for arithmetic)."""
    with np.load(path, allow_pickle=False) as z:
        return {"ids": [str(i) for i in z["ids"]], "labels": z["labels"].astype(np.int64),
                "classes": [str(c) for c in z["classes"]],
                "probs": {k[len(_PROBS):]: z[k].astype(np.float32)
                          for k in z.files if k.startswith(_PROBS)},
                "path": str(path)}


def fuse(members: list[dict], protocol: str) -> np.ndarray:
    """Model fusion (Sect. 4.4): the average of several runs' saved softmax outputs for
    ``protocol`` (members as returned by ``load_probs``). The members must have been
    evaluated on the same images in the same order with the same class order."""
    if not members:
        raise ValueError("fuse needs at least one member run")

    def name(m, i):
        return m.get("path", f"member {i}")

    first = members[0]
    for i, m in enumerate(members):
        if protocol not in m.get("probs", {}):
            raise ValueError(f"{name(m, i)} has no {protocol!r} outputs; it has "
                             f"{sorted(m.get('probs', {}))}")
    for i, m in enumerate(members[1:], start=1):
        if list(m["classes"]) != list(first["classes"]):
            raise ValueError(f"{name(m, i)} has classes {list(m['classes'])} but "
                             f"{name(first, 0)} has {list(first['classes'])}: fusion needs "
                             f"the same class order")
        if list(m["ids"]) != list(first["ids"]):
            a, b = list(first["ids"]), list(m["ids"])
            if len(a) != len(b):
                why = f"{len(b)} images vs {len(a)}"
            elif sorted(a) == sorted(b):
                why = "the same images in another order"
            else:
                why = f"{len(set(a) ^ set(b))} image ids differ"
            raise ValueError(f"{name(m, i)} was evaluated on different images than "
                             f"{name(first, 0)} ({why}); fusion needs the same images in "
                             f"the same order")
        if not np.array_equal(np.asarray(m["labels"]), np.asarray(first["labels"])):
            raise ValueError(f"{name(m, i)} has other labels for the same image ids than "
                             f"{name(first, 0)}")
    return combine(*[m["probs"][protocol] for m in members])


# --- one run's evaluation ---------------------------------------------------------------

def _entry(probs: np.ndarray, labels, scales: list[int], scales_px: list[int],
           seconds: float) -> dict:
    err = errors(probs, labels)
    _, lo, hi = bootstrap_ci(topk_correct(probs, labels, 1))
    n = len(probs)
    return {"top1_err": round(err["top1_err"], 2), "top5_err": round(err["top5_err"], 2),
            "top1_ci95": [round(lo, 2), round(hi, 2)],
            "scales": list(scales), "scales_px": list(scales_px), "n_images": n,
            "seconds": round(seconds, 2),
            "images_per_s": round(n / seconds, 2) if seconds > 0 else None}


def evaluate_run(model: VGG, images, mean, *, train_scale: str, profile, multi_crop: bool = False,
                 device="cpu", batch_size: int | None = None,
                 progress: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """Every protocol a run feeds: ``dense@<Q>`` (Table 3's single Q), ``centre-crop@<Q>``
    (one centre crop at that Q, no flip: Sect. 4.1's B vs 5x5 comparison), ``multi-scale``
    (Table 4's three Q) and, with ``multi_crop``, ``multi-crop`` and ``multi-crop+dense``
    over the same three Q (Table 5). Q are the paper's pixels for ``train_scale``
    (vgg.profiles.test_scales), converted to real pixels with ``profile.px``.

    Returns (eval dict for metrics.json, {protocol: softmax outputs float32 [N, classes]}).
    The single-Q dense outputs are the multi-scale ones at that Q (computed once);
    ``seconds`` of a protocol is its whole cost, so multi-crop+dense counts both parts.
    """
    _check_model(model)
    scales = test_scales(train_scale)
    single, multi = scales["single"], scales["multi"]
    if profile.crop != model.crop:
        raise ValueError(f"profile {profile.name!r} has crop {profile.crop} px but the model "
                         f"takes {model.crop} px: evaluate with the profile it was built for")
    px = {q: profile.px(q) for q in single + multi}
    for q in single + multi:
        if px[q] < model.crop:
            raise ValueError(f"test scale Q = {q} (paper px) is {px[q]} real px at profile "
                             f"{profile.name!r}, smaller than the model's crop ({model.crop} px); "
                             f"valid Q are >= {model.crop} real px")
    imgs = _image_list(images)
    labels = np.asarray(getattr(images, "labels"), dtype=np.int64).ravel()
    if len(labels) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(labels)} labels")
    bs = batch_size or profile.eval_batch_size
    kw = dict(batch_size=bs, device=device, progress=progress)

    dense: dict[int, tuple[np.ndarray, float]] = {}

    def dense_at(q: int) -> tuple[np.ndarray, float]:
        if px[q] not in dense:
            t = time.perf_counter()
            p = dense_probs(model, images, px[q], mean, flip=True, **kw)
            dense[px[q]] = (p, time.perf_counter() - t)
        return dense[px[q]]

    ev, probs = {}, {}
    for q in single:
        p, s = dense_at(q)
        key = f"dense@{q}"
        probs[key] = p
        ev[key] = _entry(p, labels, [q], [px[q]], s)
    for q in single:
        # Sect. 4.1 compares B with its 5x5 form on a single centre crop (no flip).
        t = time.perf_counter()
        key = f"centre-crop@{q}"
        probs[key] = multi_crop_probs(model, images, [px[q]], mean, crop=model.crop, flip=False,
                                      grid=1, **kw)
        ev[key] = _entry(probs[key], labels, [q], [px[q]], time.perf_counter() - t)
    parts = [dense_at(q) for q in multi]
    probs["multi-scale"] = combine(*[p for p, _ in parts])
    ms_seconds = sum(s for _, s in parts)
    ev["multi-scale"] = _entry(probs["multi-scale"], labels, multi, [px[q] for q in multi],
                               ms_seconds)
    if multi_crop:
        t = time.perf_counter()
        probs["multi-crop"] = multi_crop_probs(model, images, [px[q] for q in multi], mean,
                                               crop=model.crop, batch_size=max(bs, 2 * GRID ** 2),
                                               device=device, progress=progress)
        mc_seconds = time.perf_counter() - t
        ev["multi-crop"] = _entry(probs["multi-crop"], labels, multi, [px[q] for q in multi],
                                  mc_seconds)
        probs["multi-crop+dense"] = combine(probs["multi-crop"], probs["multi-scale"])
        ev["multi-crop+dense"] = _entry(probs["multi-crop+dense"], labels, multi,
                                        [px[q] for q in multi], mc_seconds + ms_seconds)
    return ev, probs
