"""Testing protocols of Sect. 3.2 and 4.1-4.4 (vgg.evaluate), on tiny models and images."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vgg
from vgg import data
from vgg.evaluate import (PROTOCOLS, Evaluation, _flip, combine, crop_grid, dense_probs, evaluate_run,
                          multi_crop_probs, windows_as_crops)
from vgg.profiles import PROFILES

CROP = 32  # the smoke profile's crop (224 paper px at f = 1/7)
MEAN = np.array([120.0, 115.0, 100.0], dtype=np.float32)
CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return vgg.build("A", num_classes=4, width=0.125, crop=CROP)


def _img(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def _images(sizes=((37, 50), (45, 33), (37, 50), (61, 40), (33, 33)), seed=0):
    imgs = [_img(h, w, seed + i) for i, (h, w) in enumerate(sizes)]
    n = len(imgs)
    return data.Images(images=imgs, labels=torch.arange(n) % len(CLASSES),
                       ids=[f"img{i}" for i in range(n)], classes=list(CLASSES))


def _softmax_of_net(model, img):
    x = data.normalize(data.rescale(img, CROP)[None], torch.as_tensor(MEAN))
    model.eval()
    with torch.inference_mode():
        return F.softmax(model(x), dim=1)[0].numpy()


def test_dense_on_a_crop_sized_image_is_the_networks_softmax(model):
    img = _img(CROP, CROP, 1)
    p = dense_probs(model, [img], CROP, MEAN, flip=False, progress=False)
    np.testing.assert_allclose(p[0], _softmax_of_net(model, img), rtol=1e-5, atol=1e-6)
    assert p.dtype == np.float32 and p.shape == (1, 4)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)


def test_dense_keeps_input_order_when_batching_by_size(model):
    imgs = _images()
    together = dense_probs(model, imgs, 40, MEAN, batch_size=2, progress=False)
    alone = np.concatenate([dense_probs(model, [im], 40, MEAN, progress=False)
                            for im in imgs.images])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-6)


def test_flip_really_flips():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    torch.testing.assert_close(_flip(x), x[..., torch.arange(4, -1, -1)])


def test_dense_flip_on_a_symmetric_image_changes_nothing(model):
    half = _img(CROP, 20, 2)
    sym = torch.cat([half, half.flip(-1)], dim=-1)  # 32 x 40, mirror-symmetric
    on = dense_probs(model, [sym], CROP, MEAN, flip=True, progress=False)
    off = dense_probs(model, [sym], CROP, MEAN, flip=False, progress=False)
    np.testing.assert_allclose(on, off, rtol=1e-5, atol=1e-6)
    # ... while on an asymmetric image the flip does change the output
    img = _img(CROP, 40, 3)
    assert not np.allclose(dense_probs(model, [img], CROP, MEAN, flip=True, progress=False),
                           dense_probs(model, [img], CROP, MEAN, flip=False, progress=False))


def test_flip_averages_the_two_softmax_outputs(model):
    img = _img(CROP, CROP, 4)
    both = dense_probs(model, [img], CROP, MEAN, flip=True, progress=False)[0]
    expected = (_softmax_of_net(model, img) + _softmax_of_net(model, img.flip(-1))) / 2
    np.testing.assert_allclose(both, expected, rtol=1e-5, atol=1e-6)


def test_multi_scale_is_the_mean_of_dense(model):
    imgs = _images()
    ms = PROTOCOLS["multi-scale"].fn(Evaluation(model, imgs, MEAN, progress=False), [32, 40])
    d = [dense_probs(model, imgs, q, MEAN, progress=False) for q in (32, 40)]
    np.testing.assert_allclose(ms, (d[0] + d[1]) / 2, rtol=1e-5, atol=1e-7)


def test_crop_grid_is_a_regular_5x5_grid_with_corners():
    h, w, c = 45, 70, 32
    g = crop_grid(h, w, c)
    assert len(g) == 25 and len(set(g)) == 25
    assert all(0 <= y <= h - c and 0 <= x <= w - c for y, x in g)
    assert {(0, 0), (0, w - c), (h - c, 0), (h - c, w - c)} <= set(g)
    assert sorted({y for y, _ in g}) == [0, 3, 6, 10, 13]  # rint(linspace(0, 13, 5))
    assert crop_grid(32, 32, 32) == [(0, 0)] * 25  # crop-sized image: 25 times the same crop
    with pytest.raises(ValueError, match="does not fit"):
        crop_grid(31, 40, 32)


def test_multi_crop_runs_150_crops_over_3_scales(model):
    seen = []
    hook = model.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    try:
        p = multi_crop_probs(model, [_img(37, 50, 5)], [32, 40, 48], MEAN,
                             progress=False)
    finally:
        hook.remove()
    assert sum(s[0] for s in seen) == 150
    assert all(s[1:] == (3, CROP, CROP) for s in seen)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)


def test_multi_crop_is_the_mean_over_crops_and_flips(model):
    img = _img(CROP, 40, 6)  # q = 32: no rescale; grid x = 0, 2, 4, 6, 8
    p = multi_crop_probs(model, [img], [CROP], MEAN, progress=False)[0]
    crops = [img[:, :, x:x + CROP] for x in (0, 2, 4, 6, 8)]
    each = [_softmax_of_net(model, c) for c in crops] + \
           [_softmax_of_net(model, c.flip(-1)) for c in crops]
    np.testing.assert_allclose(p, np.mean(each, axis=0), rtol=1e-5, atol=1e-6)


def test_multi_crop_batching_does_not_change_the_result(model):
    imgs = _images()
    a = multi_crop_probs(model, imgs, [32, 40], MEAN, batch_size=7, progress=False)
    b = multi_crop_probs(model, imgs, [32, 40], MEAN, batch_size=1000, progress=False)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_combine_is_the_mean():
    rng = np.random.default_rng(0)
    a, b, c = (rng.random((3, 4)).astype(np.float32) for _ in range(3))
    np.testing.assert_allclose(combine(a, b, c), (a + b + c) / 3, rtol=1e-6)
    np.testing.assert_array_equal(combine(a), a)
    with pytest.raises(ValueError, match="same images"):
        combine(a, rng.random((2, 4)))


@pytest.mark.parametrize("train_scale,single", [("256", 256), ("256-512", 384)])
def test_evaluate_run_keys(model, train_scale, single):
    profile = PROFILES["smoke"]
    imgs = _images(sizes=((75, 90), (80, 75), (75, 90)))
    names = ["dense", "centre-crop", "multi-scale", "multi-crop", "multi-crop+dense"]
    ev, probs = evaluate_run(model, imgs, MEAN, train_scale=train_scale, profile=profile,
                             protocols=names, progress=False)
    keys = [f"dense@{single}", f"centre-crop@{single}", "multi-scale", "multi-crop", "multi-crop+dense"]
    assert list(ev) == keys and list(probs) == keys
    multi = vgg.profiles.test_scales(train_scale)["multi"]
    assert ev["multi-scale"]["scales"] == multi
    assert ev["multi-scale"]["scales_px"] == [profile.px(q) for q in multi]
    assert ev[f"dense@{single}"]["scales_px"] == [profile.px(single)]
    for e in ev.values():
        assert {"top1_err", "top5_err", "scales", "scales_px", "n_images", "seconds",
                "images_per_s"} <= set(e)
        assert e["n_images"] == 3 and 0 <= e["top1_err"] <= 100
    for p in probs.values():
        assert p.shape == (3, 4)
    np.testing.assert_allclose(probs["multi-crop+dense"],
                               (probs["multi-crop"] + probs["multi-scale"]) / 2, rtol=1e-6)
    assert [e["protocol"] for e in ev.values()] == names
    # the 150 crops' cost counts in the combination too, the dense passes in multi-scale
    assert ev["multi-crop+dense"]["seconds"] >= ev["multi-crop"]["seconds"]
    ev2, probs2 = evaluate_run(model, imgs, MEAN, train_scale=train_scale, profile=profile,
                               protocols=names[:3], progress=False)
    assert list(ev2) == keys[:3]
    np.testing.assert_array_equal(probs2["multi-scale"], probs["multi-scale"])
    with pytest.raises(ValueError, match="unknown protocol.*valid: dense"):
        evaluate_run(model, imgs, MEAN, train_scale=train_scale, profile=profile, protocols=["10-crop"])


def test_empty_or_too_small_scales_raise(model):
    imgs = _images()
    with pytest.raises(ValueError, match="no test scales"):
        multi_crop_probs(model, imgs, [], MEAN, progress=False)
    with pytest.raises(ValueError, match=r"Q = 31 real px.*>= the model's crop \(32 px\)"):
        dense_probs(model, imgs, 31, MEAN, progress=False)
    with pytest.raises(ValueError, match="Q = 20 real px"):
        multi_crop_probs(model, imgs, [40, 20], MEAN, progress=False)
    # S = 224 at the smoke profile: Q = S - 32 = 192 paper px is 27 real px < crop 32
    with pytest.raises(ValueError, match="Q = 27 real px"):
        evaluate_run(model, imgs, MEAN, train_scale="224", profile=PROFILES["smoke"],
                     protocols=["multi-scale"], progress=False)
    with pytest.raises(ValueError, match="crop 64"):
        evaluate_run(model, imgs, MEAN, train_scale="256", profile=PROFILES["cpu"],
                     protocols=["dense"], progress=False)
    with pytest.raises(ValueError, match="empty"):
        dense_probs(model, [], 32, MEAN, progress=False)


def test_centre_windows_trims_to_the_stride_around_the_centre():
    from vgg.evaluate import centre_windows

    x = torch.arange(2 * 3 * 73 * 97, dtype=torch.float32).view(2, 3, 73, 97)
    y = centre_windows(x)
    assert y.shape == (2, 3, 64, 96)
    torch.testing.assert_close(y, x[..., 4:68, 0:96])  # 9 odd rows: 4 above, 5 below
    z = torch.zeros(1, 3, 64, 96)
    assert centre_windows(z) is not None and centre_windows(z).shape == z.shape  # the paper's sizes: a no-op
    with pytest.raises(ValueError, match="smaller than the net's stride"):
        centre_windows(torch.zeros(1, 3, 20, 40))


def test_dense_evaluation_centres_its_windows(model):
    """dense_probs on a 47x59 image (one window of 32 on the short side, 15 odd pixels) is
    the net on the centred 32x32 trim; the top-left windows of the plain dense net differ."""
    img = _img(47, 59, 5)
    p = dense_probs(model, [img], 47, MEAN, flip=False, progress=False)[0]
    x = data.normalize(img[None].float(), torch.as_tensor(MEAN))
    model.eval()
    with torch.inference_mode():
        centred = F.softmax(vgg.to_dense(model)(x[..., 7:39, 13:45]), dim=1)[0].numpy()
        top_left = F.softmax(vgg.to_dense(model)(x), dim=1)[0].numpy()
    np.testing.assert_allclose(p, centred, rtol=1e-5, atol=1e-6)
    assert not np.allclose(p, top_left, atol=1e-4)


def test_windows_as_crops_scores_each_window_in_the_dense_pass_and_as_a_crop(model):
    from vgg.evaluate import centre_crop, centre_windows

    def dense_context(*a, **k):
        p, extra = windows_as_crops(*a, **k)
        err = 100 * np.mean(p.argmax(1) != np.asarray(a[1].labels))
        return dict(extra, crops_on_grid=err, n_images=len(p))
    imgs = _images(sizes=((37, 50), (45, 33), (64, 90), (50, 50), (33, 60), (70, 40)), seed=3)
    # At q = crop there is one window, the centre crop itself: all five measures agree.
    one = dense_context(model, imgs, CROP, MEAN, progress=False)
    assert one["n_windows"] == one["n_images"] == 6
    assert len({round(one[k], 9) for k in ("window_in_dense", "window_as_crop", "dense", "crops_on_grid", "centre_crop")}) == 1
    # At q = 2 crops, each image has 2 x 2 or more windows; a loop over them gives the same counts.
    q = 2 * CROP
    got = dense_context(model, imgs, q, MEAN, batch_size=2, progress=False)
    dense = vgg.to_dense(model).eval()
    model.eval()
    wrong = dict(window_in_dense=0, window_as_crop=0, dense=0, crops_on_grid=0, centre_crop=0)
    n_win = 0
    with torch.inference_mode():
        for img, y in zip(imgs.images, imgs.labels.tolist()):
            x = data.normalize(data.rescale(img, q)[None], torch.as_tensor(MEAN))
            xt = centre_windows(x)
            sm = dense.score_map(xt)[0]
            h, w = sm.shape[-2:]
            crop_probs = []
            for a in range(h):
                for b in range(w):
                    s = model(xt[:, :, 32 * a:32 * a + CROP, 32 * b:32 * b + CROP])[0]
                    wrong["window_as_crop"] += int(s.argmax() != y)
                    wrong["window_in_dense"] += int(sm[:, a, b].argmax() != y)
                    crop_probs.append(F.softmax(s, 0))
                    n_win += 1
            wrong["dense"] += int(sm.mean((1, 2)).argmax() != y)
            wrong["crops_on_grid"] += int(torch.stack(crop_probs).mean(0).argmax() != y)
            wrong["centre_crop"] += int(model(centre_crop(x[0], CROP)[None])[0].argmax() != y)
    assert got["n_windows"] == n_win > 4 * len(imgs.images) - 1
    for k, v in wrong.items():
        div = n_win if k.startswith("window") else len(imgs.images)
        assert got[k] == pytest.approx(100 * v / div), k
    # dense without the flip, as dense_probs computes it
    p = dense_probs(model, imgs, q, MEAN, flip=False, progress=False)
    assert got["dense"] == pytest.approx(100 * np.mean(p.argmax(1) != imgs.labels.numpy()))
    # the protocol's record carries the window-level numbers (the dense-context penalty)
    ev, _ = evaluate_run(model, imgs, MEAN, train_scale="256", profile=PROFILES["smoke"],
                         protocols=["windows-as-crops"], progress=False)
    rec = ev["windows-as-crops@256"]
    assert {"window_in_dense", "window_as_crop", "n_windows"} <= set(rec) and rec["protocol"] == "windows-as-crops"


def test_windows_as_crops_cuts_the_crops_one_stride_apart_and_one_crop_wide():
    """With a 64 px crop (a 2x2 last feature map, the cpu profile's) the windows overlap: 32 px
    apart, 64 wide. The crops scored against each label must be exactly those regions (with
    a crop equal to the stride, as in the test above, a mix-up of the two would not show)."""
    from vgg.evaluate import centre_windows
    torch.manual_seed(1)
    net = vgg.build("A", num_classes=4, width=0.125, crop=64).eval()
    img = _img(96, 160, seed=7)  # rescaled to q = 96: 96 x 160, a 2 x 4 score map
    x = centre_windows(data.normalize(data.rescale(img, 96)[None], torch.as_tensor(MEAN)))
    with torch.inference_mode():
        crops = [net(x[:, :, 32 * a:32 * a + 64, 32 * b:32 * b + 64])[0] for a in range(2) for b in range(4)]
    for i, s in enumerate(crops):
        # label each window's crop with its own top class: then that one window, as a crop, is right
        label = int(s.argmax())
        imgs = data.Images(images=[img], labels=torch.tensor([label]), ids=["x"], classes=list(CLASSES))
        _, got = windows_as_crops(net, imgs, 96, MEAN, batch_size=3, progress=False)
        assert got["n_windows"] == 8
        expected = 100 * np.mean([int(c.argmax()) != label for c in crops])
        assert got["window_as_crop"] == pytest.approx(expected), i


def test_dense_softmax_averages_each_windows_posterior(model):
    """The paper averages class posteriors over the score map; dense averages scores first."""
    img = _img(64, 96, 11)  # q = 64: a 2 x 3 score map
    ev = Evaluation(model, [img], MEAN, progress=False)
    got = PROTOCOLS["dense-softmax"].fn(ev, [64])[0]
    x = vgg.evaluate.centre_windows(data.normalize(img[None], torch.as_tensor(MEAN)))
    model.eval()
    with torch.inference_mode():
        m = vgg.to_dense(model)
        post = lambda t: F.softmax(m.score_map(t), dim=1).mean(dim=(-2, -1))[0]
        want = ((post(x) + post(x.flip(-1))) / 2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, dense_probs(model, [img], 64, MEAN, progress=False)[0], atol=1e-5)


def test_every_protocol_is_one_registry_entry_with_its_scales(model):
    imgs = _images(sizes=((75, 90), (80, 75)))
    names = list(PROTOCOLS)
    ev, probs = evaluate_run(model, imgs, MEAN, train_scale="384", profile=PROFILES["smoke"],
                             protocols=names, progress=False)
    for name in names:
        key = vgg.evaluate.result_key(name, "384")
        assert key == (f"{name}@384" if PROTOCOLS[name].scales == "single" else name)
        assert ev[key]["scales"] == vgg.profiles.test_scales("384")[PROTOCOLS[name].scales]
        np.testing.assert_allclose(probs[key].sum(1), 1, rtol=1e-4)


def test_sharded_windows_as_crops_numbers_merge_into_the_whole_sets(model):
    """Under torchrun each rank scores its shard; the merged rates are the whole set's."""
    from vgg.evaluate import PROTOCOLS
    imgs = _images(sizes=((37, 50), (45, 33), (64, 90), (50, 50), (33, 60), (70, 40)), seed=3)
    whole = windows_as_crops(model, imgs, 2 * CROP, MEAN, progress=False)[1]
    parts = [imgs.subset(list(range(r, len(imgs), 2))) for r in (0, 1)]
    merged = PROTOCOLS["windows-as-crops"].merge(
        [(len(p), windows_as_crops(model, p, 2 * CROP, MEAN, progress=False)[1]) for p in parts])
    assert merged.keys() == whole.keys() and merged["n_windows"] == whole["n_windows"]
    assert all(merged[k] == pytest.approx(whole[k]) for k in whole)
