"""The data paths (issue 21): images on the device and images streamed from the folder give
the decode cache's batches; "auto" picks by size; a whole run streams to the same result."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from imagefolder import make_image_folder
from vgg import data as D
from vgg import datapath
from vgg.config import RunConfig
from vgg.profiles import PROFILES
from vgg.run import run_experiment

SMOKE = PROFILES["smoke"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x 16 train images of odd sizes: 6 batches of 8 per epoch."""
    return make_image_folder(tmp_path_factory.mktemp("datapath"), n_classes=3, train_per_class=16,
                             val_per_class=3, seed=2)


def _batches(images, cls=D.TrainBatches, **kw):
    return cls(images, None, crop=SMOKE.crop, scale=(SMOKE.px(256), SMOKE.px(512)), batch_size=8,
               stats=D.colour_stats(images), seed=5, **kw)


def _same_epoch(a, b, epoch=3):
    n = 0
    for (xa, ya), (xb, yb) in zip(a.epoch(epoch), b.epoch(epoch), strict=True):
        assert torch.equal(xa.cpu(), xb.cpu()) and torch.equal(ya.cpu(), yb.cpu())
        n += 1
    return n


@pytest.mark.parametrize("cache_side", [None, 70])
def test_streamed_batches_are_the_cached_batches(folder, cache_side):
    """Workers decode each batch's JPEGs (shrunk as the cache shrinks them): bit for bit the same."""
    cached = D.load_split(folder, "train", cache_side=cache_side, progress=False)
    lazy = datapath.stream_split(folder, "train", cache_side=cache_side)
    assert isinstance(lazy.images, datapath.Files) and lazy.key == cached.key and lazy.ids == cached.ids
    assert torch.equal(lazy.labels, cached.labels) and len(lazy) == len(cached) == 48
    ref = _batches(cached)
    assert _same_epoch(ref, _batches(lazy, datapath.StreamBatches, workers=2)) == 6
    assert _same_epoch(ref, _batches(lazy, datapath.StreamBatches, workers=0)) == 6
    sub = lazy.subset([3, 1])  # still lazy
    assert isinstance(sub.images, datapath.Files) and torch.equal(sub.images[0], cached.images[3])


def test_images_moved_to_a_device_make_the_same_batches(folder):
    """The device path: the cache's one buffer copied once, the views rebuilt on it, the batches
    built there. On this CPU the copy is another buffer with the same pixels; on CUDA (when
    present) the rescale may round differently by at most one grey level."""
    cached = D.load_split(folder, "train", progress=False)
    moved = datapath.to_device(cached, "cpu")
    buffers = {im.untyped_storage().data_ptr() for im in moved.images}
    assert len(buffers) == 1 and buffers != {cached.images[0].untyped_storage().data_ptr()}  # one copy, not 48
    assert all(torch.equal(a, b) and a.stride() == b.stride() for a, b in zip(moved.images, cached.images))
    assert _same_epoch(_batches(cached, prefetch=False), _batches(moved, prefetch=False)) == 6
    if torch.cuda.is_available():
        on_gpu = _batches(datapath.to_device(cached, "cuda"), prefetch=False)
        for (xa, ya), (xb, yb) in zip(_batches(cached).epoch(1), on_gpu.epoch(1)):
            assert xb.is_cuda and torch.equal(ya, yb.cpu()) and (xa - xb.cpu()).abs().max() <= 1.0


def test_auto_picks_the_path_by_size_and_refuses_the_device_without_a_gpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(datapath, "_ram_bytes", lambda: 16 << 30)
    assert datapath.choose("auto", 5 << 30, cpu) == "memory"  # Imagenette-320: ~5.7 GB
    assert datapath.choose("auto", 1300 << 30, cpu) == "stream"  # ImageNet at shortest side 512
    assert datapath.choose("stream", 1, cpu) == "stream"
    with pytest.raises(ValueError, match="keeps the images on the GPU"):
        datapath.choose("device", 1, cpu)
    with pytest.raises(ValueError, match="data_path 'gpu' is not valid"):
        RunConfig.from_dict({"data_path": "gpu"})


def test_decoded_bytes_estimates_from_a_sample(folder):
    lazy = datapath.stream_split(folder, "train")
    exact = sum(im.numel() for im in lazy.images)
    assert datapath.decoded_bytes(lazy, sample=48) == exact
    assert abs(datapath.decoded_bytes(lazy, sample=8) - exact) < 0.5 * exact


def test_a_streamed_run_is_the_cached_run(folder, tmp_path):
    """One smoke run per path, one thread each: the same batches give the same training and
    the same evaluation; the folder records the path."""
    out = {}
    for path in ("memory", "stream"):
        cfg = RunConfig.from_dict(dict(net="A", profile="smoke", epochs=2, data=str(folder), threads=1,
                                       data_path=path, workers=1, out=str(tmp_path / path)))
        run_experiment(cfg, progress=False)
        out[path] = json.loads((tmp_path / path / "metrics.json").read_text())
    assert out["stream"]["data"]["path"] == "stream" and out["memory"]["data"]["path"] == "memory"
    hist = {p: pd.read_csv(tmp_path / p / "history.csv")[["train_loss", "holdout_top1_err"]] for p in out}
    pd.testing.assert_frame_equal(hist["stream"], hist["memory"])
    assert {k: v["top1_err"] for k, v in out["stream"]["eval"].items()} == \
           {k: v["top1_err"] for k, v in out["memory"]["eval"].items()}
    a, b = (np.load(tmp_path / p / "probs.npz") for p in ("memory", "stream"))
    assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_compile_is_refused_on_the_cpu_before_any_work(folder, tmp_path):
    cfg = RunConfig.from_dict(dict(net="A", profile="smoke", data=str(folder / "nowhere"), compile=True,
                                   device="cpu", out=str(tmp_path / "c")))
    with pytest.raises(ValueError, match="compile=True is for CUDA"):
        run_experiment(cfg, progress=False)
