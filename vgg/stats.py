"""Error rates and their uncertainty (numpy only).

The paper reports single numbers on 50K validation images; at Imagenette's 3,925 a
difference of one point can be noise, so every error here comes with a percentile
bootstrap interval over images, and comparisons of two runs on the same images use a
*paired* bootstrap (the same resampled images for both), which is much tighter than
comparing two independent intervals. Spread over training seeds is ``mean_std``.

With several training seeds the outcomes come as a [seeds, images] array and the
bootstrap is two-level: each replicate draws the seeds with replacement and, once for
all of them, the images. The interval then covers both sources of noise a reader cares
about, which validation images were drawn and which training run came out; pooling the
seeds' outcomes as if they were more images would cover only the first, and would
narrow with every seed added even when the seeds disagree. (With 2-3 seeds the seed
level is coarse: its percentiles reach roughly the best and worst seed.)

Errors are in percent, differences in percentage points, as in the paper's tables.
"""
from __future__ import annotations

import numpy as np


def _as_bool(correct, name: str = "correct") -> np.ndarray:
    """Per-image outcomes as a [seeds, images] bool array; a 1-D array is one seed."""
    a = np.asarray(correct)
    if a.ndim not in (1, 2):
        raise ValueError(f"{name} must be per-image outcomes, 1-D [images] or 2-D "
                         f"[seeds, images], got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: need at least one image and one seed")
    a = a.reshape(-1, a.shape[-1])
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1) per image, got values outside {{0, 1}}")
        a = a.astype(bool)
    return a


def _check_boot(n_boot: int, level: float) -> None:
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level!r}")


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    lo, hi = np.quantile(samples, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _bootstrap_means(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` two-level resamples of the per-image values ``x`` [seeds, images]:
    the images drawn with replacement (the same draw for every seed: they are the same
    validation images), then the seeds drawn with replacement and their means averaged.
    With one seed this is the plain bootstrap over images. Chunked so memory stays small."""
    rng = np.random.default_rng(seed)
    k, n = x.shape
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        per_seed = x[:, rng.integers(0, n, size=(m, n))].mean(axis=2)  # [seeds, m]
        if k == 1:
            out[start:start + m] = per_seed[0]
        else:
            draw = rng.integers(0, k, size=(m, k))
            out[start:start + m] = np.take_along_axis(per_seed.T, draw, axis=1).mean(axis=1)
    return out


def error_percent(correct) -> float:
    """Error in percent: 100 * (1 - accuracy)."""
    return float(100.0 * (1.0 - _as_bool(correct).mean()))


def bootstrap_ci(correct, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(error %, low, high): the error (mean over seeds) and a percentile bootstrap interval
    over images, and over seeds when ``correct`` is [seeds, images]."""
    c = _as_bool(correct)
    _check_boot(n_boot, level)
    err = 100.0 * (1.0 - c.mean())
    lo, hi = _percentiles(100.0 * (1.0 - _bootstrap_means(c, n_boot, seed)), level)
    return float(err), lo, hi


def paired_bootstrap_diff(correct_a, correct_b, n_boot: int = 2000, level: float = 0.95,
                          seed: int = 0) -> tuple[float, float, float]:
    """(error_a - error_b, low, high) in percentage points, resampling the same images
    for both runs (paired). Both arrays must be the same images in the same order; as
    [seeds, images], row s of a is paired with row s of b (same seed, same images) and the
    seeds are resampled too, see the module docstring."""
    a, b = _as_bool(correct_a, "correct_a"), _as_bool(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same images (and seeds) for both runs: "
                         f"correct_a is {list(a.shape)} [seeds, images], correct_b {list(b.shape)}")
    _check_boot(n_boot, level)
    # Per image, a's error minus b's: +1 where only a is wrong, -1 where only b is wrong.
    d = b.astype(np.int8) - a.astype(np.int8)
    diff = 100.0 * d.mean()
    lo, hi = _percentiles(100.0 * _bootstrap_means(d, n_boot, seed), level)
    return float(diff), lo, hi


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds; std is nan for one value."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("mean_std needs at least one value")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


def topk_correct(probs, labels, k: int) -> np.ndarray:
    """Per image: is the true label among the k highest-scoring classes?"""
    p = np.asarray(probs)
    y = np.asarray(labels).astype(np.int64).ravel()
    if p.ndim != 2:
        raise ValueError(f"probs must be [images, classes], got shape {p.shape}")
    if p.shape[0] != y.size:
        raise ValueError(f"probs has {p.shape[0]} images but labels has {y.size}")
    n_classes = p.shape[1]
    if not 1 <= k <= n_classes:
        raise ValueError(f"k must be in 1..{n_classes} (the number of classes), got {k}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    # Ties are broken against the true class: it counts only if fewer than k classes
    # score strictly higher *and* it is not tied with the k-th (so a constant output is wrong).
    true = p[np.arange(y.size), y]
    higher = (p > true[:, None]).sum(axis=1)
    ties = (p == true[:, None]).sum(axis=1) - 1
    return (higher + ties) < k


def errors(probs, labels) -> dict[str, float]:
    """Top-1 and top-5 error in percent (top-5 uses k = min(5, classes))."""
    p = np.asarray(probs)
    k5 = min(5, p.shape[1]) if p.ndim == 2 else 5
    return {"top1_err": error_percent(topk_correct(p, labels, 1)),
            "top5_err": error_percent(topk_correct(p, labels, k5))}


__all__ = ["bootstrap_ci", "paired_bootstrap_diff", "mean_std", "topk_correct", "errors",
           "error_percent"]
