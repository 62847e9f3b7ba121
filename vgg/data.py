"""Images and the paper's transforms: decode once into a uint8 cache, augment as tensor ops.

Pipeline (Simonyan & Zisserman 2015):

* Sect. 2.1: the only pre-processing is subtracting the mean RGB of the training set
  (:func:`normalize`, :func:`colour_stats`).
* Sect. 3.1: training crops are taken from an image isotropically rescaled so that its
  shortest side is S (fixed, or jittered per image in [Smin, Smax]); each crop is randomly
  flipped and gets AlexNet's PCA colour shift (:class:`TrainBatches`).
* Sect. 3.2: at test time the image is rescaled so its shortest side is Q (:func:`rescale`);
  the evaluation code does the rest.

Decoding JPEGs costs more than the whole augmentation at the cpu profile, so every image is
decoded once into one flat uint8 buffer cached on disk (:func:`load_split`) and memory-mapped
later (folders too large for that, or images kept on the GPU: vgg.datapath). The rest is
plain torch, with every random draw from a ``torch.Generator`` seeded from (seed, epoch): a
run is reproducible bit for bit and never disturbs the global RNG (which dropout uses).
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as TF

from . import io as vgg_io

IMAGENETTE: dict[str, str] = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
    "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball",
    "n03888257": "parachute",
}
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
_CACHE_VERSION = 2  # bump when the cache layout or the decoding changes


def find_data(data: str | os.PathLike | None = None, folder: str = "imagenette2-160") -> Path:
    """The image folder: ``data`` if given, else ``$VGG_DATA``, else the first that exists of
    ``<repo>/data/<folder>`` and ``<repo>/../shared/data/<folder>`` (a profile names its folder).

    An explicit choice (the argument or ``$VGG_DATA``) is never silently replaced by a default:
    if it does not exist, that is the error.
    """
    if data is not None:
        places, why = [Path(data)], "the given path"
    elif os.environ.get("VGG_DATA"):
        places, why = [Path(os.environ["VGG_DATA"])], "$VGG_DATA"
    else:
        root = vgg_io.ROOT  # looked up at call time, so tests can point it elsewhere
        places = [root / "data" / folder, root.parent / "shared" / "data" / folder]
        why = "the default places"
    for place in places:
        if place.is_dir():
            return place.resolve()
    raise FileNotFoundError(
        f"no image folder found ({why}); looked in:\n" + "".join(f"  {p}\n" for p in places)
        + "Get Imagenette with `make data`, or set VGG_DATA to a folder laid out as "
          "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG.")


def _cache_dir(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("VGG_CACHE") or vgg_io.ROOT / ".cache" / "vgg")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------- images

@dataclass
class Images:
    """The decoded uint8 images of one split (or a subset of one)."""

    # each uint8 [3, H, W] RGB: a view into one flat (mmapped) buffer that holds the pixels
    # as H, W, 3 (the decoder's layout; torchvision's uint8 resize is ~2x faster on it)
    images: list[torch.Tensor]
    labels: torch.Tensor  # int64 [N], index into classes
    ids: list[str]  # path relative to the data root, e.g. "val/n01440764/x.JPEG"
    classes: list[str]  # sorted wnids
    key: str | None = None  # identifies the content (cache key); colour_stats caches under it

    def __len__(self) -> int:
        return len(self.images)

    @property
    def device(self) -> torch.device:
        """Where the pixels are (vgg.datapath.to_device puts them on a GPU); batches are built there."""
        return self.images[0].device if isinstance(self.images, list) and self.images else torch.device("cpu")

    def subset(self, idx) -> "Images":
        idx = torch.as_tensor(idx, dtype=torch.int64).reshape(-1)
        key = None if self.key is None else _digest([self.key, idx.tolist()])
        take = getattr(self.images, "take", lambda ix: [self.images[i] for i in ix])  # lazy: datapath.Files
        return Images(take(idx.tolist()), self.labels[idx], [self.ids[i] for i in idx.tolist()], list(self.classes), key)


def _decode(path: Path) -> torch.Tensor:
    """Decode one image file to uint8 [3, H, W] RGB (grayscale and RGBA become RGB)."""
    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except RuntimeError as e:  # torchvision reports corrupt and truncated files this way
        raise ValueError(f"cannot decode image {path}: {e}. vgg.data never skips an image "
                         f"silently: repair or delete the file.") from None


def _list_split(root: Path, split: str, classes: list[str] | None, per_class: int | None):
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder {folder} does not exist; expected <root>/{split}/<wnid>/*.JPEG")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not found:
        raise ValueError(f"no class folders in {folder}: expected {folder}/<wnid>/*.JPEG")
    if classes is None:
        classes = found
    missing = [c for c in found if c not in classes]
    if missing:
        raise ValueError(f"classes {missing} in {folder} are not among the training classes "
                         f"{list(classes)}: every {split} class must also be in train")
    files, labels = [], []
    for wnid in found:
        names = sorted(p for p in (folder / wnid).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not names:
            raise ValueError(f"class folder {folder / wnid} holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}, any case)")
        names = names[:per_class] if per_class is not None else names
        files += names
        labels += [classes.index(wnid)] * len(names)
    return list(classes), files, labels


def load_split(root, split: str, *, classes: list[str] | None = None, per_class: int | None = None,
               cache_side: int | None = None, cache_dir=None, progress: bool = True) -> Images:
    """Load ``<root>/<split>/<wnid>/*`` (.jpeg/.jpg/.png, any case) as uint8 RGB tensors.

    Classes are the sorted wnid folders; pass ``classes`` (train's) when loading val so labels
    agree (a val class absent from train is a ValueError). ``per_class`` keeps the first N
    files (sorted) of each class. ``cache_side`` shrinks images whose shortest side is larger
    (isotropically) before caching, to bound the cache of full-size ImageNet.

    Every file is decoded once into one flat uint8 buffer, written atomically as
    ``<cache_dir>/<split>-<key>.npy`` (+ ``.json``: shapes, offsets, labels, ids); the key
    (:func:`split_key`) changes with any file, so a changed folder is decoded afresh. Later
    loads memory-map it (copy-on-write). ``cache_dir``: ``$VGG_CACHE``, else ``<repo>/.cache/vgg``.

    Errors are loud by decision: a missing split folder, no class folders, an empty class
    folder, a corrupt image (naming the file). A bad file is never skipped: a silently
    smaller dataset would change every result.
    """
    root = Path(root).resolve()
    classes, files, labels = _list_split(root, split, classes, per_class)
    key = split_key(root, split, classes, per_class, cache_side, files)
    base = _cache_dir(cache_dir) / f"{split}-{key}"
    meta_path, buf_path = base.with_suffix(".json"), base.with_suffix(".npy")
    if not (meta_path.exists() and buf_path.exists()):
        _build_cache(files, root, labels, classes, cache_side, buf_path, meta_path, progress, split)
    return _read_cache(buf_path, meta_path, key)


def split_key(root: Path, split, classes, per_class, cache_side, files) -> str:
    """What a split's decoded pixels depend on: the cache's name and the colour statistics' key."""
    return _digest({"v": _CACHE_VERSION, "root": str(root), "split": split, "classes": classes,
                    "per_class": per_class, "cache_side": cache_side,
                    "files": [[f.relative_to(root).as_posix(), s.st_size, s.st_mtime_ns]
                              for f, s in ((f, f.stat()) for f in files)]})


def decode(path: Path, cache_side: int | None = None) -> torch.Tensor:
    """One image as the cache holds it: shrunk to shortest side ``cache_side`` when larger."""
    img = _decode(path)
    return rescale(img, cache_side) if cache_side is not None and min(img.shape[-2:]) > cache_side else img


def _build_cache(files, root, labels, classes, cache_side, buf_path, meta_path, progress, split):
    from tqdm import tqdm

    # decode_image releases the GIL, so two threads keep both cores busy.
    with ThreadPoolExecutor(2) as pool:
        imgs = list(tqdm(pool.map(lambda f: decode(f, cache_side), files), total=len(files), disable=None if progress else True,
                         desc=f"decoding {split} (once; cached)", unit="img"))
    shapes = [list(im.shape) for im in imgs]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    # The .npy goes first: the .json marks a complete cache, and each is renamed into place.
    with vgg_io.atomic_path(buf_path) as tmp:
        buf = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(offsets[-1],))
        for i in range(len(imgs)):
            # HWC: decode_image's memory layout already, so this is a plain copy
            buf[offsets[i]:offsets[i + 1]] = imgs[i].permute(1, 2, 0).contiguous().numpy().ravel()
            imgs[i] = None  # free as we go: the buffer is the only copy we need
        buf.flush()
        del buf
    vgg_io.write_json(meta_path, {"classes": classes, "labels": labels, "shapes": shapes, "offsets": offsets,
                                  "ids": [f.relative_to(root).as_posix() for f in files]})


def _read_cache(buf_path: Path, meta_path: Path, key: str) -> Images:
    meta = json.loads(meta_path.read_text())
    # mode "c": copy-on-write, so the tensors are writable (no torch warning) and pages load lazily.
    buf = torch.from_numpy(np.load(buf_path, mmap_mode="c"))
    if buf.numel() != meta["offsets"][-1]:
        raise ValueError(f"image cache {buf_path} is inconsistent with {meta_path}; delete both")
    images = [buf[o:o + c * h * w].view(h, w, c).permute(2, 0, 1) for o, (c, h, w) in zip(meta["offsets"], meta["shapes"])]
    return Images(images, torch.tensor(meta["labels"], dtype=torch.int64), meta["ids"], meta["classes"], key)


# ----------------------------------------------------------------------------- statistics

@dataclass
class ColourStats:
    mean: torch.Tensor  # float32 [3], mean RGB of the training pixels, 0-255 scale
    eigval: torch.Tensor  # float32 [3], eigenvalues of the RGB covariance (0-255 scale), descending
    eigvec: torch.Tensor  # float32 [3, 3], columns are eigenvectors


def colour_stats(images: Images, cache_dir=None) -> ColourStats:
    """Mean RGB (Sect. 2.1) and the eigen-decomposition of the RGB covariance (for AlexNet's
    PCA colour shift, Sect. 3.1) over every pixel of ``images`` (population covariance).

    The sums are exact (float64 holds these integer sums without rounding).
    Cached as JSON under ``images.key`` when the images have one.
    """
    path = None if images.key is None else _cache_dir(cache_dir) / f"colour-{images.key}.json"
    if path is not None and path.exists():
        d = json.loads(path.read_text())
        return ColourStats(*(torch.tensor(d[k], dtype=torch.float32) for k in ("mean", "eigval", "eigvec")))
    n, s, ss = 0, torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)
    for i in range(0, len(images), 64):  # chunks of images: fewer, larger tensor ops
        x = torch.cat([im.permute(1, 2, 0).reshape(-1, 3) for im in images.images[i:i + 64]]).double()
        # float64 sums of 0-255 products are exact below 2^53 (~10^11 pixels); x.T @ x is one BLAS call
        n, s, ss = n + x.shape[0], s + x.sum(0), ss + x.T @ x
    if n == 0:
        raise ValueError("colour_stats needs at least one image")
    mean = s / n
    eigval, eigvec = torch.linalg.eigh(ss / n - torch.outer(mean, mean))
    eigval, eigvec = eigval.flip(0).clamp_min(0), eigvec.flip(1)  # largest first
    d = {"mean": mean.tolist(), "eigval": eigval.tolist(), "eigvec": eigvec.tolist()}
    path is None or vgg_io.write_json(path, d)
    # made from the stored lists, as a later load makes them: the same bits (strides) either way
    return ColourStats(*(torch.tensor(d[k], dtype=torch.float32) for k in ("mean", "eigval", "eigvec")))


def holdout_split(labels: torch.Tensor, frac: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, holdout_idx): a random but fixed ``frac`` of each class (at least one image)
    held out from training, e.g. to drive the learning-rate schedule; sorted, deterministic in seed."""
    g = torch.Generator().manual_seed(seed)
    train, hold = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        k = max(1, round(frac * len(members)))
        hold.append(members[:k])
        train.append(members[k:])
    return torch.cat(train).sort().values, torch.cat(hold).sort().values


# ----------------------------------------------------------------------------- transforms

def rescale(img: torch.Tensor, short_side: int) -> torch.Tensor:
    """Isotropic rescale of uint8 [3,H,W] or [N,3,H,W] so the shortest side is ``short_side``
    (the training scale S of Sect. 3.1, the test scale Q of Sect. 3.2); antialiased, uint8 out.
    An image already at that size is returned as is (no copy): don't modify the result in place."""
    if min(img.shape[-2:]) == short_side:
        return img
    return TF.resize(img, [int(short_side)], antialias=True)


def normalize(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """uint8 [N,3,H,W] -> float32 0-255 pixel values minus the mean RGB, channels_last.

    Sect. 2.1: "The only pre-processing we do is subtracting the mean RGB value, computed on
    the training set, from each pixel." No division by a std. channels_last is the fast layout
    for CPU convolutions.
    """
    out = x.to(torch.float32, memory_format=torch.channels_last)
    return out.sub_(mean.to(torch.float32).view(1, 3, 1, 1))


def _generator(seed: int, epoch: int) -> torch.Generator:
    # Hash (seed, epoch) so no two pairs share a stream (seed*K + epoch would collide).
    return torch.Generator().manual_seed(int(_digest(["train", seed, epoch])[:15], 16))


@dataclass
class EpochPlan:
    """Every random draw of one epoch, made up front so batch building is a pure function
    of the plan (hence identical with or without the prefetch thread)."""

    index: torch.Tensor  # int64 [n]: image index, in shuffled order
    scale: torch.Tensor  # int64 [n]: S, the shortest side after rescaling
    uy: torch.Tensor  # float64 [n] in [0, 1): crop position, fraction of the free range
    ux: torch.Tensor
    flip: torch.Tensor  # bool [n]
    alpha: torch.Tensor  # float32 [n, 3]: PCA colour-shift coefficients


class TrainBatches:
    """The paper's training transforms (Sect. 3.1) as batched tensor ops.

    Per image: S drawn uniformly from the integers [Smin, Smax] (Smin = Smax: fixed S), an
    isotropic rescale to shortest side S, a random ``crop`` x ``crop`` crop, a horizontal flip
    with p = 0.5, AlexNet's PCA colour shift, then mean subtraction (Sect. 2.1).

    deviation: the colour shift's scale (the book's protocol chapter lists it).
    Colour shift: AlexNet (Krizhevsky et al. 2012, Sect. 4.1) adds ``P @ (alpha * lambda)`` with
    alpha ~ N(0, 0.1). Taken literally with 0-255 eigenvalues (variances, ~10^4) that is a shift
    of ~10^3 grey levels, which would wash out the image; the formula only makes sense on one
    particular pixel scale. We scale by the standard deviation along each principal component
    instead, ``eigvec @ (alpha * sqrt(eigval))``, which is independent of the pixel scale: a
    shift of 10% of the colour spread (about 10 grey levels for the first component on
    Imagenette). The shift is the same for every pixel of an image.

    ``crop`` and ``scale`` are in real pixels (convert with the profile). The last incomplete
    batch of an epoch is dropped. Under DDP (``rank``, ``world``, set by ``fit``) a rank builds
    its slice of each global batch from the same plan: the global batch is one process's.
    """
    rank, world = 0, 1

    def __init__(self, images: Images, idx: torch.Tensor | None, *, crop: int, scale: tuple[int, int],
                 batch_size: int, stats: ColourStats, seed: int, pca_std: float = 0.1,
                 prefetch: bool = True):
        lo, hi = int(scale[0]), int(scale[1])
        if not crop <= lo <= hi:
            raise ValueError(f"scale {scale} must satisfy crop ({crop}) <= Smin <= Smax")
        self.images, self.crop, self.scale = images, int(crop), (lo, hi)
        self.idx = torch.arange(len(images)) if idx is None else torch.as_tensor(idx, dtype=torch.int64)
        self.batch_size, self.stats, self.seed = int(batch_size), stats, seed
        self.pca_std, self.prefetch = float(pca_std), prefetch
        if len(self) == 0:
            raise ValueError(f"{len(self.idx)} images make no full batch of {batch_size}")

    def __len__(self) -> int:
        return len(self.idx) // self.batch_size

    def plan(self, epoch: int) -> EpochPlan:
        """All of the epoch's random draws, from a generator seeded by (seed, epoch)."""
        g, n = _generator(self.seed, epoch), len(self.idx)
        return EpochPlan(
            index=self.idx[torch.randperm(n, generator=g)],
            scale=torch.randint(self.scale[0], self.scale[1] + 1, (n,), generator=g),
            uy=torch.rand(n, generator=g, dtype=torch.float64),
            ux=torch.rand(n, generator=g, dtype=torch.float64),
            flip=torch.rand(n, generator=g) < 0.5,
            alpha=torch.randn(n, 3, generator=g) * self.pca_std)

    def batch(self, plan: EpochPlan, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``b`` of an epoch's plan: x float32 [B,3,crop,crop] channels_last, y int64 [B]."""
        part = self.batch_size // self.world
        sl, c = slice(b * self.batch_size + self.rank * part, b * self.batch_size + (self.rank + 1) * part), self.crop
        index, dev = plan.index[sl], self.images.device  # on a GPU when the images are (vgg.datapath)
        crops = torch.empty(len(index), 3, c, c, dtype=torch.uint8, memory_format=torch.channels_last, device=dev)
        draws = zip(index.tolist(), *(t[sl].tolist() for t in (plan.scale, plan.uy, plan.ux, plan.flip)))
        for j, (i, s, uy, ux, f) in enumerate(draws):
            img = rescale(self.images.images[i], s)  # each image has its own size: one at a time
            h, w = img.shape[-2:]
            y, x = int(uy * (h - c + 1)), int(ux * (w - c + 1))
            img = img[:, y:y + c, x:x + c]
            crops[j] = img.flip(-1) if f else img
        st = self.stats
        # the whole global batch's shift, then this rank's rows: a matmul over fewer rows may
        # round differently, and the ranks' batches must be one process's bit for bit
        whole = slice(b * self.batch_size, (b + 1) * self.batch_size)
        shift = ((plan.alpha[whole] * st.eigval.clamp_min(0).sqrt()) @ st.eigvec.T)[sl.start - whole.start:
                                                                                   sl.stop - whole.start].to(dev)
        # uint8 - float32 -> float32 in one pass (- mean + shift); the output keeps channels_last
        x = (crops - (st.mean.to(dev) - shift).view(-1, 3, 1, 1)).contiguous(memory_format=torch.channels_last)
        return x, self.images.labels[index.to(self.images.labels.device)]

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch; the same (seed, epoch) gives the same batches bit for bit.
        With ``prefetch`` one thread builds the next batch while the training step runs (torch
        ops release the GIL): batches are a pure function of the epoch's plan, so it changes
        nothing but the speed."""
        plan = self.plan(epoch)
        if not self.prefetch:
            yield from (self.batch(plan, b) for b in range(len(self)))
            return
        with ThreadPoolExecutor(1, thread_name_prefix="TrainBatches-prefetch") as pool:
            ahead = pool.submit(self.batch, plan, 0)
            for b in range(len(self)):
                batch = ahead.result()
                if b + 1 < len(self):
                    ahead = pool.submit(self.batch, plan, b + 1)
                yield batch


__all__ = ["IMAGENETTE", "find_data", "Images", "load_split", "split_key", "decode", "ColourStats",
           "colour_stats", "holdout_split", "rescale", "normalize", "TrainBatches", "EpochPlan"]
