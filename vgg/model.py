"""The networks of Table 1 (Sect. 2.1-2.2): one table in the paper's letters, one builder.

A configuration is a string in the notation of Table 1: ``convK-N`` is a KxK convolution
(stride 1, padding K//2, so 3x3 keeps the size and C's 1x1 convs have no padding) with N
output channels followed by ReLU; ``LRN`` is local response normalisation; ``|`` ends a
block with a 2x2 max-pool of stride 2. Every net ends with the same head:
FC-4096, ReLU, dropout 0.5, FC-4096, ReLU, dropout 0.5, FC-classes (Sect. 2.1, 3.1).

Module names follow torchvision (``features``, ``classifier``), so torchvision's
vgg11/13/16/19 state dicts load into A/B/D/E unchanged.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

# Table 1, plus the shallow variant of B from Sect. 4.1 (each pair of 3x3 convs -> one 5x5).
CONFIGS: dict[str, str] = {
    "A": "conv3-64 | conv3-128 | conv3-256 conv3-256 | conv3-512 conv3-512 | conv3-512 conv3-512",
    "A-LRN": "conv3-64 LRN | conv3-128 | conv3-256 conv3-256 | conv3-512 conv3-512 | conv3-512 conv3-512",
    "B": "conv3-64 conv3-64 | conv3-128 conv3-128 | conv3-256 conv3-256 | conv3-512 conv3-512 | conv3-512 conv3-512",
    "C": "conv3-64 conv3-64 | conv3-128 conv3-128 | conv3-256 conv3-256 conv1-256"
         " | conv3-512 conv3-512 conv1-512 | conv3-512 conv3-512 conv1-512",
    "D": "conv3-64 conv3-64 | conv3-128 conv3-128 | conv3-256 conv3-256 conv3-256"
         " | conv3-512 conv3-512 conv3-512 | conv3-512 conv3-512 conv3-512",
    "E": "conv3-64 conv3-64 | conv3-128 conv3-128 | conv3-256 conv3-256 conv3-256 conv3-256"
         " | conv3-512 conv3-512 conv3-512 conv3-512 | conv3-512 conv3-512 conv3-512 conv3-512",
    "B-5x5": "conv5-64 | conv5-128 | conv5-256 | conv5-512 | conv5-512",
}
NETS: tuple[str, ...] = tuple(CONFIGS)
FC_WIDTH = 4096
DOWNSAMPLE = 32  # five 2x2 max-pools


class LocalResponseNorm(nn.LocalResponseNorm):
    """torch's LRN (same constants, same formula), with the sum over neighbouring channels
    done as one matmul with a 0/1 band matrix on the channels-last view:

        b_c = a_c * (k + alpha / n * sum_{|c' - c| <= n // 2} a_c'^2) ** -beta

    torch's version pads and average-pools the squares in 3-D, which made A-LRN train at
    about 0.4x A's speed on CPU; this one is ~3x faster on the layer (``python -m vgg bench
    lrn``) and equal to torch's within float rounding, values and gradients
    (tests/test_model.py). Odd n only, as in AlexNet; 4-D input (other shapes fall back to
    torch's). In float16, x * x overflows for |x| > 256, as in torch's own layer.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        if size % 2 != 1:
            raise ValueError(f"LRN size must be odd (a window centred on each channel), got {size}")
        super().__init__(size, alpha, beta, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:  # the nets only feed it images (N, C, H, W); anything else: torch's
            return super().forward(x)
        c = torch.arange(x.shape[1], device=x.device)
        band = ((c[:, None] - c[None, :]).abs() <= self.size // 2).to(x.dtype)
        # NHWC view: no copy for channels-last input (the nets' layout), one for NCHW.
        window_sum = ((x * x).permute(0, 2, 3, 1) @ band).permute(0, 3, 1, 2)
        return x * (self.k + self.alpha / self.size * window_sum).pow(-self.beta)


def _lrn() -> nn.Module:
    # AlexNet Sect. 3.3: n=5, k=2, alpha=1e-4, beta=0.75. PyTorch divides alpha by n,
    # so AlexNet's alpha=1e-4 is alpha=5e-4 here (see the reference sheet, Sect. 3).
    return LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)


def _layers(net: str) -> list[tuple[str, int, int]]:
    """Parse a configuration into (kind, kernel, channels) tuples; kind in conv/lrn/pool."""
    check_net(net)
    out = []
    for token in CONFIGS[net].replace("|", " | ").split():
        if token == "|":
            out.append(("pool", 2, 0))
        elif token == "LRN":
            out.append(("lrn", 0, 0))
        else:
            k, n = re.fullmatch(r"conv(\d)-(\d+)", token).groups()
            out.append(("conv", int(k), int(n)))
    out.append(("pool", 2, 0))  # the last block's pool
    return out


def check_net(net: str) -> None:
    if net not in CONFIGS:
        raise ValueError(f"unknown net {net!r}; valid nets: {', '.join(NETS)}")


def _scaled(channels: int, width: float, what: str) -> int:
    n = int(channels * width)
    if n < 1:
        raise ValueError(f"width {width} leaves {what} ({channels} channels in the paper) "
                         f"with {channels * width:g} channels; use width >= {1 / channels:g}")
    return n


def _check_geometry(width: float, crop: int) -> None:
    if not isinstance(crop, int) or crop < DOWNSAMPLE or crop % DOWNSAMPLE:
        raise ValueError(f"crop {crop!r} must be a positive multiple of {DOWNSAMPLE} "
                         f"(five 2x2 max-pools), e.g. 224 (paper) or 64 (cpu profile)")
    if not (isinstance(width, (int, float)) and 0 < width <= 1):
        raise ValueError(f"width {width!r} must be in (0, 1]: it divides every conv and FC width")


class VGG(nn.Module):
    """A VGG net at a given width and crop; ``forward`` takes crop-sized images."""

    def __init__(self, net: str, num_classes: int = 1000, width: float = 1.0, crop: int = 224):
        super().__init__()
        check_net(net)
        _check_geometry(width, crop)
        self.net, self.num_classes, self.width, self.crop = net, num_classes, float(width), crop
        layers: list[nn.Module] = []
        channels = 3
        for kind, k, n in _layers(net):
            if kind == "conv":
                out = _scaled(n, width, f"conv{k}-{n}")
                layers += [nn.Conv2d(channels, out, k, padding=k // 2), nn.ReLU(inplace=True)]
                channels = out
            elif kind == "lrn":
                layers.append(_lrn())
            else:
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.feature_side = crop // DOWNSAMPLE  # 7 at the paper's 224; 2 at the cpu profile's 64
        fc = _scaled(FC_WIDTH, width, f"FC-{FC_WIDTH}")
        self.classifier = nn.Sequential(
            nn.Linear(channels * self.feature_side ** 2, fc), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc, num_classes),
        )
        init_glorot(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if x.shape[-2:] != (self.feature_side, self.feature_side):
            raise ValueError(f"{self.net} at crop {self.crop} takes {self.crop}x{self.crop} images, got a "
                             f"{x.shape[-2]}x{x.shape[-1]} feature map instead of {self.feature_side}x"
                             f"{self.feature_side}; use vgg.to_dense for whole images")
        return self.classifier(torch.flatten(x, 1))

    def extra_repr(self) -> str:
        return f"net={self.net!r}, width={self.width}, crop={self.crop}, classes={self.num_classes}"


def build(net: str, num_classes: int = 1000, width: float = 1.0, crop: int = 224) -> VGG:
    """Build configuration ``net`` (Table 1). ``width`` divides every conv and FC width;
    ``crop`` is the input size in real pixels (the first FC layer sees (crop/32)^2 x C)."""
    return VGG(net, num_classes=num_classes, width=width, crop=crop)


class DenseVGG(nn.Module):
    """The fully convolutional form of a VGG net (Sect. 3.2), sharing its weights.

    FC1 becomes a conv whose kernel is the last feature map at the crop size (7x7 in the
    paper), FC2 and FC3 become 1x1 convs. The conv kernels are *views* of the Linear
    weights, taken at every call, so the two forms can never drift apart. ``forward``
    returns class scores averaged over the spatial score map (the paper's sum-pooling).
    """

    def __init__(self, model: VGG):
        super().__init__()
        self.model = model

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        if x.shape[-1] < m.crop or x.shape[-2] < m.crop:
            raise ValueError(f"dense evaluation needs images at least {m.crop}x{m.crop} "
                             f"(the crop); got {x.shape[-2]}x{x.shape[-1]}")
        x = m.features(x)
        fc1, relu1, drop1, fc2, relu2, drop2, fc3 = m.classifier
        k = m.feature_side
        x = drop1(relu1(F.conv2d(x, fc1.weight.view(fc1.out_features, -1, k, k), fc1.bias)))
        x = drop2(relu2(F.conv2d(x, fc2.weight[:, :, None, None], fc2.bias)))
        return F.conv2d(x, fc3.weight[:, :, None, None], fc3.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_map(x).mean(dim=(-2, -1))


def to_dense(model: VGG) -> DenseVGG:
    """The dense (fully convolutional) form of ``model`` (Sect. 3.2); same parameters."""
    if not isinstance(model, VGG):
        raise TypeError(f"to_dense takes a model made by vgg.build, got {type(model).__name__}")
    return DenseVGG(model)


# --- initialisation (Sect. 3.1) -------------------------------------------------------

def init_glorot(model: nn.Module) -> None:
    """deviation: the default initialisation (the paper trained A first, see init_paper).

    Glorot & Bengio (2010) uniform weights, zero biases: the paper's later remark (Sect. 3.1)
    that this removes the need to pre-train net A."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def _weight_layers(model: VGG) -> tuple[list[nn.Conv2d], list[nn.Linear]]:
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    return convs, fcs


def paper_fan_in_ratio(model: VGG) -> list[float]:
    """Per weight layer (convs, then FCs): the layer's fan-in in the paper's net (width 1,
    crop 224) over its fan-in here. Built on the meta device: no memory for 138M weights."""
    with torch.device("meta"):
        ref = VGG(model.net, model.num_classes, 1.0, 224)
    ours, paper = (sum(_weight_layers(m), []) for m in (model, ref))
    return [p.weight[0].numel() / o.weight[0].numel() for o, p in zip(ours, paper)]


INIT_REST = ("normal", "glorot")  # init_paper: how a deeper net's layers not copied from A start


def init_paper(model: VGG, from_a: VGG | None = None, std: float = 0.01, gain_matched: bool = False,
               rest: str = "normal") -> list[str]:
    """The paper's original scheme (Sect. 3.1): N(0, std^2) weights, zero biases, then the
    first four conv layers and the three FC layers copied from a trained net A.

    deviation (``gain_matched``, the cpu128 profile): each layer's std is
    ``std * sqrt(paper fan-in / our fan-in)``, so that std * sqrt(fan-in), the factor by which
    a layer scales its input's spread, is the paper's. At width 1/8 a flat N(0, 0.01) shrinks
    the signal about 3x more per conv layer than at the paper's width; A then started at
    chance and stayed there (loss ln 10, runs/cpu128-pilot).

    deviation (``rest="glorot"``, the cpu128 profile): a deeper net's layers that are not
    copied from A start from Glorot init (the paper's own alternative, Sect. 3.1) instead of
    N(0, std). With N(0, std) the 5-9 new layers between A's convs and A's FC head shrink the
    signal so much that the head's input is 10^3-10^4 times smaller than in the trained A
    (C: 1.5e-5 against 0.45); C then sat at chance. Glorot keeps it within 1-17x.

    The deeper nets' layer shapes differ from A's (D's second conv is 64->64, A's is
    64->128), so each of A's first four convs is copied into the next conv of the target
    with the same shape, in order; for D that is conv 1, 3, 5, 6. Returns the copied
    layers' names (for the run's provenance).
    """
    if rest not in INIT_REST:
        raise ValueError(f"rest={rest!r}: the layers not copied from A start from one of {INIT_REST}")
    layers = sum(_weight_layers(model), [])
    ratios = paper_fan_in_ratio(model) if gain_matched else [1.0] * len(layers)
    for m, r in zip(layers, ratios):
        nn.init.normal_(m.weight, 0.0, std * r ** 0.5)
        nn.init.zeros_(m.bias)
    if from_a is None:
        return []
    if not isinstance(from_a, VGG) or from_a.net != "A":
        raise ValueError(f"A-init copies from a trained net A, got "
                         f"{getattr(from_a, 'net', type(from_a).__name__)!r}")
    if (from_a.width, from_a.crop, from_a.num_classes) != (model.width, model.crop, model.num_classes):
        raise ValueError(
            f"A-init needs net A of the same width, crop and classes: A has width={from_a.width}, "
            f"crop={from_a.crop}, classes={from_a.num_classes}; {model.net} has width={model.width}, "
            f"crop={model.crop}, classes={model.num_classes}")
    names = {id(m): n for n, m in model.named_modules()}
    src_convs, src_fcs = _weight_layers(from_a)
    dst_convs, dst_fcs = _weight_layers(model)
    copied, j = [], 0
    with torch.no_grad():
        for src in src_convs[:4]:
            while j < len(dst_convs) and dst_convs[j].weight.shape != src.weight.shape:
                j += 1
            if j == len(dst_convs):
                break  # e.g. B-5x5: no 3x3 conv to receive it
            dst_convs[j].weight.copy_(src.weight)
            dst_convs[j].bias.copy_(src.bias)
            copied.append(names[id(dst_convs[j])])
            j += 1
        for src, dst in zip(src_fcs, dst_fcs):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
            copied.append(names[id(dst)])
    if rest == "glorot":
        for m in layers:
            if names[id(m)] not in copied:
                nn.init.xavier_uniform_(m.weight)
    return copied


# --- description for the architecture chapter (Table 1-2) ------------------------------

def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(net: str, num_classes: int = 1000, width: float = 1.0, crop: int = 224) -> list[dict]:
    """One row per layer: name, output shape (C, H, W), parameters, multiply-adds, receptive
    field (in input pixels) and jump (input pixels between neighbouring outputs).

    The FC layers are described in their dense form over a crop-sized input, which is
    what they compute. No model is built, so this is cheap at the paper's width.
    """
    _check_geometry(width, crop)
    rows, c, side, rf, jump = [], 3, crop, 1, 1
    for kind, k, n in _layers(net):
        if kind == "conv":
            out = _scaled(n, width, f"conv{k}-{n}")
            params = (k * k * c + 1) * out
            rf += (k - 1) * jump
            rows.append(dict(layer=f"conv{k}-{out}", kind="conv", out_shape=(out, side, side),
                             params=params, macs=k * k * c * out * side * side,
                             receptive_field=rf, jump=jump))
            c = out
        elif kind == "lrn":
            rows.append(dict(layer="LRN", kind="lrn", out_shape=(c, side, side), params=0,
                             macs=0, receptive_field=rf, jump=jump))
        else:
            rf += jump
            jump *= 2
            side //= 2
            rows.append(dict(layer="maxpool", kind="pool", out_shape=(c, side, side), params=0,
                             macs=0, receptive_field=rf, jump=jump))
    fc = _scaled(FC_WIDTH, width, f"FC-{FC_WIDTH}")
    rf += (side - 1) * jump
    for i, (n_in, n_out) in enumerate([(c * side * side, fc), (fc, fc), (fc, num_classes)]):
        rows.append(dict(layer=f"FC-{n_out}", kind="fc", out_shape=(n_out, 1, 1),
                         params=(n_in + 1) * n_out, macs=n_in * n_out,
                         receptive_field=rf, jump=jump))
    return rows
