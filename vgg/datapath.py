"""Where the decoded images live while a run trains: the decode cache, the GPU, or the folder.

Three paths, one set of transforms (``vgg.data.TrainBatches``), chosen per run by
``RunConfig.data_path`` (:func:`choose` for ``"auto"``):

* ``memory``: every image decoded once into the memory-mapped cache (``vgg.data.load_split``);
  batches are built on the CPU by a prefetch thread. Imagenette at 320 px is ~5.7 GB of it.
* ``device``: the same cache copied once to the GPU (:func:`to_device`), so rescaling,
  cropping, flipping and the colour shift run there with the same tensor code; the random
  draws stay on the CPU generator, so the batches are the CPU path's (up to the GPU's
  resize rounding, measured by ``make gpu-check``).
* ``stream``: nothing decoded ahead; each epoch, DataLoader worker processes decode the JPEGs
  of each batch (:class:`Files`, :class:`StreamBatches`), shrunk as the cache would shrink them,
  so every image is read once per epoch and memory stays flat: the path for ImageNet's
  1.28 M images, whose cache would need about a terabyte.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from . import data as D

PATHS = ("auto", "memory", "device", "stream")


class Files:
    """The images of a split as a sequence that decodes on access (``vgg.data.decode``): what
    ``Images.images`` holds on the streaming path. Each image comes back in the cache's memory
    layout (H, W, 3 under a [3, H, W] view), so every transform computes exactly what it
    computes on the cached image."""

    def __init__(self, paths: list[Path], cache_side: int | None):
        self.paths, self.cache_side = list(paths), cache_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        img = D.decode(self.paths[i], self.cache_side)
        return img.permute(1, 2, 0).contiguous().permute(2, 0, 1)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def take(self, idx: list[int]) -> "Files":
        """A subset, still lazy (``Images.subset``)."""
        return Files([self.paths[i] for i in idx], self.cache_side)


def stream_split(root, split: str, *, classes: list[str] | None = None, per_class: int | None = None,
                 cache_side: int | None = None) -> D.Images:
    """``vgg.data.load_split`` without the cache: the same files, labels, ids and key (so the
    colour statistics cached for the folder are shared), the pixels decoded when used."""
    root = Path(root).resolve()
    classes, files, labels = D._list_split(root, split, classes, per_class)
    return D.Images(Files(files, cache_side), torch.tensor(labels, dtype=torch.int64),
                    [f.relative_to(root).as_posix() for f in files], classes,
                    D.split_key(root, split, classes, per_class, cache_side, files))


def to_device(images: D.Images, device: torch.device | str) -> D.Images:
    """The images (and labels) on ``device``, for batches built there. Images that are views of
    one buffer (the decode cache) are moved as that one buffer, one copy, the views rebuilt
    with the same offsets and strides; others one by one. Always a copy (also to the same device)."""
    device = torch.device(device)
    moved: dict[int, torch.Tensor] = {}

    def one(img: torch.Tensor) -> torch.Tensor:
        st = img.untyped_storage()
        if st.data_ptr() not in moved:
            moved[st.data_ptr()] = torch.empty(0, dtype=torch.uint8).set_(st).to(device, copy=True)
        return moved[st.data_ptr()].as_strided(img.shape, img.stride(), img.storage_offset())

    return D.Images([one(im) for im in images.images], images.labels.to(device), list(images.ids),
                    list(images.classes), images.key)


class _Epoch(Dataset):
    """Batch ``b`` of one epoch's plan, built in a worker process (DataLoader, batch_size=None)."""

    def __init__(self, batches: D.TrainBatches, plan: D.EpochPlan):
        self.batches, self.plan = batches, plan

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int):
        return self.batches.batch(self.plan, b)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # each worker decodes and augments one batch; the cores are the workers'


class StreamBatches(D.TrainBatches):
    """``TrainBatches`` over streamed images (``stream_split``): the same plan and transforms,
    each batch decoded and built by one of ``workers`` DataLoader processes, in order, so an
    epoch's batches are the cached path's bit for bit. ``workers=0`` builds them in-process."""

    def __init__(self, *args, workers: int = 4, pin_memory: bool = False, **kwargs):
        super().__init__(*args, prefetch=False, **kwargs)
        self.workers, self.pin_memory = int(workers), pin_memory

    def epoch(self, epoch: int):
        if self.workers == 0:
            yield from super().epoch(epoch)
            return
        # its own generator: the workers' seeds would otherwise be drawn from the global RNG,
        # which dropout draws from, and the run would no longer be the cached path's
        yield from DataLoader(_Epoch(self, self.plan(epoch)), batch_size=None, shuffle=False,
                              num_workers=self.workers, worker_init_fn=_one_thread, pin_memory=self.pin_memory,
                              prefetch_factor=2, generator=torch.Generator().manual_seed(epoch))


def decoded_bytes(images: D.Images, sample: int = 64) -> int:
    """About how many bytes ``images`` take decoded: the mean of an even sample, times the count."""
    n = len(images)
    if n == 0:
        return 0
    idx = range(0, n, max(1, n // sample))
    return int(sum(images.images[i].numel() for i in idx) / len(idx) * n)


def _ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def choose(path: str, nbytes: int, device: torch.device) -> str:
    """The data path for a set of ``nbytes`` decoded: ``path`` unless it is ``"auto"``; then
    ``device`` on CUDA when the set takes at most a third of the GPU's free memory (the rest is
    the model's, the activations' and the evaluation's), ``memory`` when it takes at most half
    of this machine's RAM, else ``stream``."""
    if path not in PATHS:
        raise ValueError(f"data_path {path!r} is not one of {PATHS}")
    if path == "device" and device.type != "cuda":
        raise ValueError("data_path='device' keeps the images on the GPU, but this run trains on the "
                         f"{device.type}; use 'memory' or 'auto'")
    if path != "auto":
        return path
    if device.type == "cuda" and nbytes <= torch.cuda.mem_get_info(device)[0] / 3:
        return "device"
    return "memory" if nbytes <= _ram_bytes() / 2 else "stream"


__all__ = ["PATHS", "Files", "stream_split", "to_device", "StreamBatches", "decoded_bytes", "choose"]
