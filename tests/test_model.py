"""The networks of Table 1-2 and the dense form of Sect. 3.2."""
import pytest
import torch
import torchvision

import vgg
from vgg.model import init_paper

# Exact weights+biases at width 1, 1000 classes, crop 224 (Table 2 rounds these).
PARAMS = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "C": 133_638_952,
          "D": 138_357_544, "E": 143_667_240, "B-5x5": 134_503_528}


def test_nets_are_the_table():
    assert vgg.NETS == ("A", "A-LRN", "B", "C", "D", "E", "B-5x5")


@pytest.mark.parametrize("net", list(PARAMS))
def test_parameter_counts_match_table_2(net):
    assert vgg.param_count(vgg.build(net)) == PARAMS[net]
    assert sum(r["params"] for r in vgg.describe(net)) == PARAMS[net]


@pytest.mark.parametrize("net,tv", [("A", "vgg11"), ("B", "vgg13"), ("D", "vgg16"), ("E", "vgg19")])
def test_same_as_torchvision(net, tv):
    """A/B/D/E are torchvision's vgg11/13/16/19: same counts, and its weights load and
    give the same scores (module names follow torchvision)."""
    ref = getattr(torchvision.models, tv)().eval()
    ours = vgg.build(net, width=1.0).eval()
    assert vgg.param_count(ours) == vgg.param_count(ref)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


def test_width_divides_every_layer():
    m = vgg.build("D", num_classes=10, width=0.25, crop=64)
    convs = [l.out_channels for l in m.features if isinstance(l, torch.nn.Conv2d)]
    assert sorted(set(convs)) == [16, 32, 64, 128]
    fc1, fc2, fc3 = [l for l in m.classifier if isinstance(l, torch.nn.Linear)]
    assert (fc1.in_features, fc1.out_features, fc3.out_features) == (128 * 2 * 2, 1024, 10)
    assert [l.p for l in m.classifier if isinstance(l, torch.nn.Dropout)] == [0.5, 0.5]


def test_lrn_only_in_a_lrn_with_alexnet_constants():
    lrn = [l for l in vgg.build("A-LRN", 10, 0.25, 64).features if isinstance(l, torch.nn.LocalResponseNorm)]
    assert len(lrn) == 1 and (lrn[0].size, lrn[0].alpha, lrn[0].beta, lrn[0].k) == (5, 5e-4, 0.75, 2)
    feats = vgg.build("A-LRN", 10, 0.25, 64).features
    assert type(feats[2]) is vgg.model.LocalResponseNorm  # ours, right after the first conv + ReLU
    for net in ("A", "B", "C", "D", "E", "B-5x5"):
        assert not any(isinstance(l, torch.nn.LocalResponseNorm) for l in vgg.build(net, 10, 0.25, 64).features)


def test_c_has_unpadded_1x1_convs():
    convs = [l for l in vgg.build("C", 10, 0.25, 64).features if isinstance(l, torch.nn.Conv2d)]
    ones = [c for c in convs if c.kernel_size == (1, 1)]
    assert len(ones) == 3 and all(c.padding == (0, 0) and c.in_channels == c.out_channels for c in ones)


@pytest.mark.parametrize("net", vgg.NETS)
def test_dense_equals_model_on_a_crop(net):
    torch.manual_seed(0)
    m = vgg.build(net, num_classes=10, width=0.25, crop=64).eval()
    x = torch.randn(3, 3, 64, 64) * 50
    torch.testing.assert_close(vgg.to_dense(m)(x), m(x), rtol=1e-5, atol=1e-5)


def test_dense_shares_weights_and_takes_any_aspect_ratio():
    m = vgg.build("A", num_classes=10, width=0.25, crop=64).eval()
    d = vgg.to_dense(m)
    # 64x96 image -> 2x3 last feature map -> FC1 as a 2x2 conv -> a 1x2 score map
    assert d.score_map(torch.randn(1, 3, 64, 96)).shape == (1, 10, 1, 2)
    assert d.score_map(torch.randn(2, 3, 128, 96)).shape == (2, 10, 3, 2)
    assert d(torch.randn(2, 3, 128, 96)).shape == (2, 10)
    with torch.no_grad():  # no copies: changing the model changes the dense form
        m.classifier[0].weight.add_(1.0)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(d(x), m(x), rtol=1e-5, atol=1e-4)
    assert {id(p) for p in d.parameters()} == {id(p) for p in m.parameters()}


def test_paper_receptive_fields():
    """Sect. 2.3: two stacked 3x3 convs see 5x5, three see 7x7."""
    rows = vgg.describe("D")
    assert [r["receptive_field"] for r in rows[:2]] == [3, 5]
    rows = vgg.describe("E", width=0.25, crop=64)
    block3 = [r["receptive_field"] for r in rows if r["kind"] == "conv"][4:7]
    jump = 4  # after two pools one pixel of the map is 4 input pixels
    assert block3[1] - block3[0] == 2 * jump and block3[2] - block3[0] == 4 * jump
    assert rows[-1]["out_shape"] == (1000, 1, 1)


def test_describe_shapes_at_cpu_scale():
    rows = vgg.describe("D", num_classes=10, width=0.25, crop=64)
    pools = [r["out_shape"] for r in rows if r["kind"] == "pool"]
    assert pools[-1] == (128, 2, 2)
    assert sum(r["params"] for r in rows) == vgg.param_count(vgg.build("D", 10, 0.25, 64))


@pytest.mark.parametrize("kwargs,match", [
    (dict(net="F"), "valid nets: A, A-LRN, B, C, D, E, B-5x5"),
    (dict(net="A", crop=100), "multiple of 32"),
    (dict(net="A", crop=0), "multiple of 32"),
    (dict(net="A", width=0.01), "channels"),
    (dict(net="A", width=1.5), "width"),
])
def test_bad_input_is_refused_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vgg.build(**kwargs)
    if "net" in kwargs and kwargs["net"] != "F":
        with pytest.raises(ValueError, match=match):
            vgg.describe(**kwargs)


def test_dense_refuses_an_image_smaller_than_the_crop():
    d = vgg.to_dense(vgg.build("A", 10, 0.25, 64))
    with pytest.raises(ValueError, match="at least 64x64"):
        d(torch.randn(1, 3, 63, 200))


def test_glorot_is_the_default_init():
    m = vgg.build("D", 10, 0.25, 64)
    w = m.features[0].weight
    bound = (6 / (w[0].numel() + w.shape[0] * 9)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert all(float(l.bias.detach().abs().sum()) == 0 for l in m.modules() if hasattr(l, "bias") and l.bias is not None)


def test_paper_init_copies_four_convs_and_the_head_from_a():
    torch.manual_seed(0)
    a = vgg.build("A", 10, 0.25, 64)
    d = vgg.build("D", 10, 0.25, 64)
    copied = init_paper(d, from_a=a)
    convs_a = [l for l in a.features if isinstance(l, torch.nn.Conv2d)]
    convs_d = [l for l in d.features if isinstance(l, torch.nn.Conv2d)]
    for src, dst in zip(convs_a[:4], [convs_d[i] for i in (0, 2, 4, 5)]):
        assert torch.equal(src.weight, dst.weight)
    for src, dst in zip(a.classifier, d.classifier):
        if isinstance(src, torch.nn.Linear):
            assert torch.equal(src.weight, dst.weight)
    assert len(copied) == 7
    assert abs(float(convs_d[1].weight.detach().std()) - 0.01) < 0.002  # the rest is N(0, 0.01^2)


def test_paper_init_rest_glorot_starts_only_the_new_layers_from_glorot():
    """cpu128: A's layers copied as before; the others Glorot uniform instead of N(0, 0.01^2)."""
    torch.manual_seed(0)
    a = vgg.build("A", 10, 0.25, 64)
    d = vgg.build("D", 10, 0.25, 64)
    copied = init_paper(d, from_a=a, rest="glorot")
    convs_a = [l for l in a.features if isinstance(l, torch.nn.Conv2d)]
    convs_d = [l for l in d.features if isinstance(l, torch.nn.Conv2d)]
    assert len(copied) == 7 and torch.equal(convs_a[0].weight, convs_d[0].weight)
    new = convs_d[1].weight.detach()  # 16 -> 16, 3x3: Glorot bound sqrt(6 / (144 + 144))
    bound = (6 / (2 * 16 * 9)) ** 0.5
    assert new.abs().max() <= bound and new.abs().max() > 0.8 * bound
    with pytest.raises(ValueError, match="normal"):
        init_paper(d, from_a=a, rest="he")


def test_paper_init_refuses_an_a_of_another_width():
    a = vgg.build("A", 10, 0.125, 64)
    with pytest.raises(ValueError, match="same width"):
        init_paper(vgg.build("D", 10, 0.25, 64), from_a=a)
    with pytest.raises(ValueError, match="trained net A"):
        init_paper(vgg.build("D", 10, 0.25, 64), from_a=vgg.build("B", 10, 0.25, 64))


@pytest.mark.parametrize("channels_last", [True, False])
def test_our_lrn_equals_torchs_in_values_and_gradients(channels_last):
    """vgg.model.LocalResponseNorm is torch's formula computed faster; it must agree."""
    from vgg.model import LocalResponseNorm
    torch.manual_seed(0)
    x = torch.randn(4, 16, 9, 7, dtype=torch.float64) * 30  # pre-LRN activations of 0-255 inputs are large
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    ours, ref = LocalResponseNorm(5, 5e-4, 0.75, 2.0), torch.nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    w = torch.randn_like(ya)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)  # float64: the same formula
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours(x[:, :3].float()), ref(x[:, :3].float()))  # fewer channels than n
    with pytest.raises(ValueError, match="must be odd"):
        LocalResponseNorm(4)
