"""vgg.data: loading and caching, statistics, and the paper's transforms (Sect. 2.1, 3.1, 3.2)."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

import vgg.data as D
from imagefolder import make_image_folder, wnid


def _stats(mean=(0.0, 0.0, 0.0)):
    return D.ColourStats(torch.tensor(mean), torch.tensor([900.0, 100.0, 25.0]), torch.eye(3))


def _synthetic(images, labels=None) -> D.Images:
    n = len(images)
    labels = torch.zeros(n, dtype=torch.int64) if labels is None else torch.as_tensor(labels)
    return D.Images(list(images), labels, [f"train/x/{i}.JPEG" for i in range(n)], ["x"])


# ------------------------------------------------------------------ loading and caching

def test_load_split_shapes_dtypes_ids(tiny_data):
    tr = D.load_split(tiny_data, "train", progress=False)
    assert len(tr) == 18 and tr.classes == [wnid(0), wnid(1), wnid(2)]
    assert tr.labels.dtype == torch.int64 and tr.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert tr.ids[0] == f"train/{wnid(0)}/train_0_000.JPEG"
    for img in tr.images:
        assert img.dtype == torch.uint8 and img.shape[0] == 3 and 60 <= min(img.shape[1:]) <= 90
    assert any(img.shape[1] > img.shape[2] for img in tr.images)  # both orientations
    assert any(img.shape[1] < img.shape[2] for img in tr.images)
    va = D.load_split(tiny_data, "val", classes=tr.classes, progress=False)
    gray = va.images[0]  # the grayscale JPEG comes out as 3 equal channels
    assert gray.shape[0] == 3 and torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_per_class_and_cache_side(tiny_data):
    few = D.load_split(tiny_data, "train", per_class=2, progress=False)
    assert few.ids == [f"train/{wnid(c)}/train_{c}_{k:03d}.JPEG" for c in range(3) for k in range(2)]
    small = D.load_split(tiny_data, "train", per_class=2, cache_side=64, progress=False)
    for a, b in zip(few.images, small.images):
        assert min(b.shape[1:]) == min(64, min(a.shape[1:]))
        assert abs(a.shape[1] / a.shape[2] - b.shape[1] / b.shape[2]) < 0.05  # isotropic


def test_second_load_reads_the_cache(tiny_data, tmp_path, monkeypatch):
    first = D.load_split(tiny_data, "val", cache_dir=tmp_path, progress=False)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npy"]

    def boom(path):
        raise AssertionError(f"decoded {path} although the cache exists")

    monkeypatch.setattr(D, "_decode", boom)
    second = D.load_split(tiny_data, "val", cache_dir=tmp_path, progress=False)
    assert second.ids == first.ids and torch.equal(second.labels, first.labels)
    assert all(torch.equal(a, b) for a, b in zip(first.images, second.images))
    with pytest.raises(AssertionError, match="decoded"):  # a different key decodes again
        D.load_split(tiny_data, "val", per_class=1, cache_dir=tmp_path, progress=False)


def test_cache_defaults_to_vgg_cache(tiny_data, vgg_cache):
    D.load_split(tiny_data, "val", per_class=1, progress=False)
    assert list(vgg_cache.glob("val-*.npy"))


def test_corrupt_and_truncated_jpeg_name_the_file(tmp_path):
    root = make_image_folder(tmp_path / "d", n_classes=2, train_per_class=2, val_per_class=1)
    bad = root / "train" / wnid(1) / "train_1_001.JPEG"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="train_1_001.JPEG"):
        D.load_split(root, "train", progress=False)
    bad.write_bytes(b"not a jpeg at all" * 20)  # corrupt
    with pytest.raises(ValueError, match="train_1_001.JPEG"):
        D.load_split(root, "train", progress=False)


def test_clear_errors_for_bad_folders(tmp_path):
    root = make_image_folder(tmp_path / "d", n_classes=2, train_per_class=1, val_per_class=1)
    with pytest.raises(FileNotFoundError, match="test"):
        D.load_split(root, "test", progress=False)
    (root / "train" / "n99999999").mkdir()
    with pytest.raises(ValueError, match="n99999999.*no images"):
        D.load_split(root, "train", progress=False)
    (root / "train" / "n99999999").rmdir()
    shutil.move(root / "val" / wnid(1), root / "val" / "n55555555")
    with pytest.raises(ValueError, match="n55555555.*not among the training classes"):
        D.load_split(root, "val", classes=[wnid(0), wnid(1)], progress=False)
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        D.load_split(root, "empty", progress=False)


def test_find_data(tmp_path, monkeypatch):
    assert D.find_data(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("VGG_DATA", str(tmp_path))
    assert D.find_data() == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        D.find_data(tmp_path / "nowhere")
    monkeypatch.delenv("VGG_DATA")
    monkeypatch.setattr(D.vgg_io, "ROOT", tmp_path / "repo")
    with pytest.raises(FileNotFoundError) as err:
        D.find_data()
    msg = str(err.value)
    assert str(tmp_path / "repo" / "data" / "imagenette2-160") in msg
    assert str(tmp_path / "shared" / "data" / "imagenette2-160") in msg
    assert "make data" in msg and "VGG_DATA" in msg


# ------------------------------------------------------------------ statistics and splits

def test_colour_stats_matches_direct_computation(tiny_data, vgg_cache):
    imgs = D.load_split(tiny_data, "train", per_class=2, progress=False)
    st = D.colour_stats(imgs)
    pix = torch.cat([im.reshape(3, -1) for im in imgs.images], 1).double()
    assert torch.allclose(st.mean.double(), pix.mean(1), atol=1e-3)
    cov = torch.cov(pix, correction=0)
    assert torch.allclose(st.eigvec.double() @ torch.diag(st.eigval.double()) @ st.eigvec.double().T,
                          cov, rtol=1e-4, atol=1e-2)
    assert st.eigval[0] >= st.eigval[1] >= st.eigval[2] and st.eigvec.shape == (3, 3)
    assert list(vgg_cache.glob(f"colour-{imgs.key}.json"))
    again = D.colour_stats(imgs)  # from the JSON cache
    assert torch.allclose(again.mean, st.mean) and torch.allclose(again.eigvec, st.eigvec)
    sub = imgs.subset([0, 1])  # a subset has its own key, so its own statistics
    assert sub.key != imgs.key
    assert torch.allclose(D.colour_stats(sub).mean.double(),
                          torch.cat([im.reshape(3, -1) for im in sub.images], 1).double().mean(1), atol=1e-3)


def test_holdout_split_per_class_and_deterministic():
    labels = torch.tensor([0] * 40 + [1] * 20 + [2] * 3)
    tr, ho = D.holdout_split(labels, frac=0.05, seed=0)
    assert torch.bincount(labels[ho]).tolist() == [2, 1, 1]
    assert sorted(tr.tolist() + ho.tolist()) == list(range(len(labels)))
    tr2, ho2 = D.holdout_split(labels, frac=0.05, seed=0)
    assert torch.equal(tr, tr2) and torch.equal(ho, ho2)
    assert not torch.equal(ho, D.holdout_split(labels, frac=0.05, seed=1)[1])


# ------------------------------------------------------------------ transforms

def test_rescale_and_normalize():
    img = torch.randint(0, 256, (3, 50, 120), dtype=torch.uint8)
    out = D.rescale(img, 30)
    assert out.dtype == torch.uint8 and out.shape == (3, 30, 72)
    assert D.rescale(img[None].expand(2, -1, -1, -1), 100).shape == (2, 3, 100, 240)
    x = D.normalize(img[None], torch.tensor([10.0, 20.0, 30.0]))
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x[0], img.float() - torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1))


def test_train_batches_shapes_ranges_and_mean(tiny_data):
    imgs = D.load_split(tiny_data, "train", progress=False)
    st = D.colour_stats(imgs)
    tb = D.TrainBatches(imgs, None, crop=32, scale=(40, 80), batch_size=4, stats=st, seed=0,
                        pca_std=0.0, prefetch=False)
    assert len(tb) == 4  # 18 images, last incomplete batch dropped
    batches = list(tb.epoch(0))
    assert len(batches) == 4
    for x, y in batches:
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert y.dtype == torch.int64 and y.shape == (4,)
        # without the colour shift, x + mean is a uint8 crop: integers in [0, 255]
        px = x + st.mean.view(1, 3, 1, 1)
        assert torch.allclose(px, px.round(), atol=1e-3) and px.min() >= -1e-3 and px.max() <= 255 + 1e-3
    # class colour survives: labels match the per-class colour of the tiny folder
    for x, y in batches:
        red = (x + st.mean.view(1, 3, 1, 1))[:, 0].mean((1, 2))
        assert all((r > 150) == (c == 0) for r, c in zip(red.tolist(), y.tolist()))


def test_mean_subtracted_is_the_training_mean():
    # Uniform images: after crop/flip/rescale every pixel is the colour, so x = colour - mean.
    imgs = _synthetic([torch.full((3, 40, 60), v, dtype=torch.uint8) for v in (50, 100, 150, 200)])
    st = _stats(mean=(7.0, 11.0, 13.0))
    tb = D.TrainBatches(imgs, None, crop=32, scale=(32, 48), batch_size=4, stats=st, seed=0,
                        pca_std=0.0, prefetch=False)
    x, _ = next(tb.epoch(0))
    assert sorted(x[:, 1].mean((1, 2)).tolist()) == [50 - 11, 100 - 11, 150 - 11, 200 - 11]
    assert torch.allclose(x[:, :, 0, 0].sort(0).values,
                          torch.tensor([[v - 7.0, v - 11.0, v - 13.0] for v in (50, 100, 150, 200)]))


def test_pca_colour_shift_is_per_image_and_along_the_eigenvectors():
    imgs = _synthetic([torch.full((3, 32, 32), 100, dtype=torch.uint8)] * 8)
    st = _stats()
    tb = D.TrainBatches(imgs, None, crop=32, scale=(32, 32), batch_size=8, stats=st, seed=3,
                        pca_std=0.1, prefetch=False)
    plan = tb.plan(0)
    x, _ = tb.batch(plan, 0)
    shift = x - 100.0
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift))  # same for every pixel
    # eigvec = I, eigval = (900, 100, 25): shift_k = alpha_k * sqrt(eigval_k)
    assert torch.allclose(shift[:, :, 0, 0], plan.alpha[:8] * torch.tensor([30.0, 10.0, 5.0]), atol=1e-4)


def test_jittered_scale_stays_in_range_and_crops_follow_it():
    imgs = _synthetic([torch.zeros(3, 50, 70, dtype=torch.uint8)] * 400)
    tb = D.TrainBatches(imgs, None, crop=32, scale=(36, 44), batch_size=8, stats=_stats(), seed=0,
                        prefetch=False)
    s = tb.plan(0).scale
    assert s.min() == 36 and s.max() == 44 and set(s.tolist()) == set(range(36, 45))  # inclusive
    fixed = D.TrainBatches(imgs, None, crop=32, scale=(40, 40), batch_size=8, stats=_stats(), seed=0)
    assert set(fixed.plan(0).scale.tolist()) == {40}
    with pytest.raises(ValueError, match="crop"):
        D.TrainBatches(imgs, None, crop=32, scale=(30, 40), batch_size=8, stats=_stats(), seed=0)


def test_crop_position_comes_from_the_rescaled_image():
    # One row index per pixel row: a crop at S = 40 from a 40x40 image keeps rows y..y+31.
    img = torch.arange(40, dtype=torch.uint8).view(1, 40, 1).expand(3, 40, 40).contiguous()
    tb = D.TrainBatches(_synthetic([img] * 64), None, crop=32, scale=(40, 40), batch_size=64,
                        stats=_stats(), seed=0, pca_std=0.0, prefetch=False)
    x, _ = next(tb.epoch(0))
    tops = x[:, 0, 0, 0].long()
    assert torch.equal(x[:, 0, :, 0], tops[:, None] + torch.arange(32).float())
    assert tops.min() >= 0 and tops.max() <= 8 and len(set(tops.tolist())) > 4


def test_flips_happen_about_half_the_time():
    # Square image of exactly crop size and S: the only change is the flip.
    img = torch.arange(32, dtype=torch.uint8).view(1, 1, 32).expand(3, 32, 32).contiguous()
    tb = D.TrainBatches(_synthetic([img] * 400), None, crop=32, scale=(32, 32), batch_size=400,
                        stats=_stats(), seed=0, pca_std=0.0, prefetch=False)
    x, _ = next(tb.epoch(0))
    plain = torch.all(x == img.float(), dim=(1, 2, 3))
    flipped = torch.all(x == img.flip(-1).float(), dim=(1, 2, 3))
    assert torch.all(plain ^ flipped)
    assert 160 < int(flipped.sum()) < 240
    assert torch.equal(flipped, tb.plan(0).flip)


def test_determinism_and_prefetch(tiny_data):
    imgs = D.load_split(tiny_data, "train", progress=False)
    kw = dict(crop=32, scale=(40, 80), batch_size=4, stats=D.colour_stats(imgs), seed=5)
    rng = torch.get_rng_state()
    a = list(D.TrainBatches(imgs, None, prefetch=False, **kw).epoch(1))
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG (dropout's) is untouched
    b = list(D.TrainBatches(imgs, None, prefetch=True, **kw).epoch(1))
    c = list(D.TrainBatches(imgs, None, prefetch=False, **kw).epoch(2))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert len(a) == len(b) == 4
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    other_seed = list(D.TrainBatches(imgs, None, prefetch=False, **{**kw, "seed": 6}).epoch(1))
    assert not torch.equal(a[0][0], other_seed[0][0])


def test_idx_restricts_the_images(tiny_data):
    imgs = D.load_split(tiny_data, "train", progress=False)
    tr, _ = D.holdout_split(imgs.labels, frac=0.2)
    tb = D.TrainBatches(imgs, tr, crop=32, scale=(40, 40), batch_size=3, stats=_stats(), seed=0)
    plan = tb.plan(0)
    assert sorted(plan.index.tolist()) == tr.tolist()
    assert sum(len(y) for _, y in tb.epoch(0)) == 3 * (len(tr) // 3)


def test_prefetch_stops_on_break_and_reraises():
    import threading

    imgs = _synthetic([torch.zeros(3, 40, 40, dtype=torch.uint8)] * 64)
    tb = D.TrainBatches(imgs, None, crop=32, scale=(32, 40), batch_size=2, stats=_stats(), seed=0)
    before = threading.active_count()
    for _ in tb.epoch(0):
        break
    assert threading.active_count() == before  # the producer thread is gone
    it = tb.epoch(0)
    next(it)
    it.close()
    assert threading.active_count() == before

    imgs.images[10] = None  # not an image: building batch 5 fails inside the thread
    broken = D.TrainBatches(imgs, None, crop=32, scale=(32, 32), batch_size=2, stats=_stats(),
                            seed=0, pca_std=0.0)
    with pytest.raises(AttributeError):
        list(broken.epoch(0))
    assert threading.active_count() == before


def test_cli_data_says_where_the_images_are(tiny_data, monkeypatch):
    import subprocess
    import sys

    env = dict(os.environ, VGG_DATA=str(tiny_data))
    done = subprocess.run([sys.executable, "-m", "vgg", "data"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and f"images of the cpu profile: {tiny_data}" in done.stdout
    env["VGG_DATA"] = str(tiny_data / "nowhere")
    bad = subprocess.run([sys.executable, "-m", "vgg", "data"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "VGG_DATA" in bad.stderr
