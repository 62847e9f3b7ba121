"""Errors and their uncertainty (vgg.stats)."""
import math

import numpy as np
import pytest

from vgg.stats import bootstrap_ci, errors, mean_std, paired_bootstrap_diff, topk_correct


def _outcomes(n, acc, seed=0):
    return np.random.default_rng(seed).random(n) < acc


def test_bootstrap_ci_contains_estimate_and_narrows():
    small, big = _outcomes(100, 0.7), _outcomes(5000, 0.7)
    for c in (small, big):
        err, lo, hi = bootstrap_ci(c, n_boot=500)
        assert err == pytest.approx(100 * (1 - c.mean()))
        assert lo <= err <= hi
    _, lo_s, hi_s = bootstrap_ci(small, n_boot=500)
    _, lo_b, hi_b = bootstrap_ci(big, n_boot=500)
    assert hi_b - lo_b < (hi_s - lo_s) / 3  # ~ 1/sqrt(50) narrower


def test_bootstrap_ci_is_reproducible_and_level_matters():
    c = _outcomes(300, 0.6)
    assert bootstrap_ci(c, n_boot=300, seed=1) == bootstrap_ci(c, n_boot=300, seed=1)
    _, lo90, hi90 = bootstrap_ci(c, n_boot=1000, level=0.90)
    _, lo99, hi99 = bootstrap_ci(c, n_boot=1000, level=0.99)
    assert hi99 - lo99 > hi90 - lo90


def test_bootstrap_ci_all_right_is_zero_width():
    assert bootstrap_ci(np.ones(50, bool), n_boot=100) == (0.0, 0.0, 0.0)


def test_bootstrap_ci_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci(np.array([], bool))
    with pytest.raises(ValueError, match="boolean"):
        bootstrap_ci(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(np.ones(3, bool), level=95)


def test_paired_diff_of_a_run_with_itself_is_exactly_zero():
    c = _outcomes(400, 0.6)
    assert paired_bootstrap_diff(c, c, n_boot=300) == (0.0, 0.0, 0.0)


def test_paired_diff_sign_and_point():
    a, b = _outcomes(1000, 0.6, seed=1), _outcomes(1000, 0.8, seed=2)
    diff, lo, hi = paired_bootstrap_diff(a, b, n_boot=500)
    assert diff == pytest.approx(100 * (1 - a.mean()) - 100 * (1 - b.mean()))
    assert 0 < lo <= diff <= hi  # a clearly worse than b


def test_paired_diff_is_tighter_than_unpaired_for_correlated_runs():
    a = _outcomes(2000, 0.7, seed=3)
    b = a.copy()
    flip = np.random.default_rng(4).choice(2000, 60, replace=False)
    b[flip] = ~b[flip]  # b agrees with a on 97% of the images
    _, lo, hi = paired_bootstrap_diff(a, b, n_boot=500)
    _, lo_a, hi_a = bootstrap_ci(a, n_boot=500)
    assert hi - lo < (hi_a - lo_a) / 2


def test_paired_diff_refuses_different_lengths():
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap_diff(np.ones(5, bool), np.ones(6, bool))


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    m, s = mean_std([4.0])
    assert m == 4.0 and math.isnan(s)
    with pytest.raises(ValueError):
        mean_std([])


def test_errors_on_a_hand_made_example():
    probs = np.array([
        [0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0],   # label 3: top-1 right
        [0.4, 0.3, 0.1, 0.1, 0.05, 0.05, 0.0],  # label 1: 2nd -> top-5 right, top-1 wrong
        [0.5, 0.2, 0.1, 0.1, 0.06, 0.04, 0.0],  # label 6: last -> both wrong
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],   # label 6: right
    ])
    labels = np.array([3, 1, 6, 6])
    assert topk_correct(probs, labels, 1).tolist() == [True, False, False, True]
    assert topk_correct(probs, labels, 5).tolist() == [True, True, False, True]
    assert errors(probs, labels) == {"top1_err": 50.0, "top5_err": 25.0}


def test_errors_top5_with_fewer_than_five_classes_and_ties():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    assert errors(probs, [2, 0]) == {"top1_err": 100.0, "top5_err": 0.0}  # k = 3 = classes
    # a constant output does not count as right (ties go against the true class)
    assert topk_correct(np.full((1, 4), 0.25), [0], 1).tolist() == [False]


def test_topk_rejects_bad_input():
    with pytest.raises(ValueError, match="labels"):
        topk_correct(np.ones((2, 3)), [0], 1)
    with pytest.raises(ValueError, match="k must be"):
        topk_correct(np.ones((2, 3)), [0, 1], 4)
    with pytest.raises(ValueError, match="labels must be in"):
        topk_correct(np.ones((2, 3)), [0, 3], 1)


# Several seeds: outcomes as [seeds, images], bootstrapped over images *and* seeds.

def _old_image_bootstrap(x, n_boot, seed):
    """The one-level bootstrap over images, written out: the reference for one seed."""
    rng = np.random.default_rng(seed)
    out, chunk = np.empty(n_boot), max(1, 2_000_000 // x.size)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        out[start:start + m] = x[rng.integers(0, x.size, size=(m, x.size))].mean(axis=1)
    return out


def test_one_seed_is_the_plain_bootstrap_over_images():
    a, b = _outcomes(3925, 0.75, seed=5), _outcomes(3925, 0.78, seed=6)
    d = b.astype(np.int8) - a.astype(np.int8)
    ref = np.quantile(100 * _old_image_bootstrap(d, 700, 0), [0.025, 0.975])
    _, lo, hi = paired_bootstrap_diff(a, b, n_boot=700)
    assert (lo, hi) == pytest.approx(tuple(ref), abs=1e-12)
    # a 1-D array and a [1, images] array are the same thing
    assert paired_bootstrap_diff(a[None], b[None], n_boot=700) == paired_bootstrap_diff(a, b, n_boot=700)
    assert bootstrap_ci(a[None], n_boot=300) == bootstrap_ci(a, n_boot=300)


def test_seeds_that_agree_add_no_width():
    """The seed level draws among identical seeds: the interval is the one-seed interval."""
    a, b = _outcomes(2000, 0.7, seed=7), _outcomes(2000, 0.75, seed=8)
    one = paired_bootstrap_diff(a, b, n_boot=500)
    three = paired_bootstrap_diff(np.stack([a] * 3), np.stack([b] * 3), n_boot=500)
    assert three == pytest.approx(one, abs=1e-12)
    assert bootstrap_ci(np.stack([a] * 3), n_boot=500) == pytest.approx(bootstrap_ci(a, n_boot=500), abs=1e-12)


def test_seeds_that_disagree_widen_the_interval_where_pooling_would_not():
    """Two seeds on the same images: one says b is 6 points better, the other 6 points worse.
    The seed level must show that disagreement; pooling the seeds as more images hides it."""
    n = 3000
    base = _outcomes(n, 0.7, seed=9)
    a = np.stack([base, base])
    b = a.copy()
    b[0, np.flatnonzero(~base)[:180]] = True   # seed 0: b right on 180 more images (+6 points)
    b[1, np.flatnonzero(base)[:180]] = False   # seed 1: b wrong on 180 more (-6 points)
    diff, lo, hi = paired_bootstrap_diff(a, b, n_boot=1000)
    assert diff == pytest.approx(0.0)
    assert lo < -5 and hi > 5  # reaches both seeds' gains
    _, plo, phi = paired_bootstrap_diff(a.ravel(), b.ravel(), n_boot=1000)  # pooled
    assert phi - plo < (hi - lo) / 4


def test_several_seeds_are_checked():
    with pytest.raises(ValueError, match=r"\[2, 5\].*\[3, 5\]"):
        paired_bootstrap_diff(np.ones((2, 5), bool), np.ones((3, 5), bool))
    with pytest.raises(ValueError, match="seeds, images"):
        bootstrap_ci(np.ones((2, 2, 2), bool))
