"""The book's profiles side by side and the convergence table (issue 19), on fake run folders."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fake_runs import write_fake_runs
from vgg import report as R
from vgg.rundir import RunDir
from vgg.spec import plan
from vgg.train import HISTORY_COLUMNS


@pytest.fixture(scope="module")
def two_profiles(tmp_path_factory):
    """cpu with seeds 0-1, cpu128 with seed 0 of A, A-LRN, B and C only (a study under way)."""
    root = tmp_path_factory.mktemp("runs")
    write_fake_runs(root, profile="cpu", seeds=(0, 1))
    write_fake_runs(root, profile="cpu128", seeds=(0,), nets=("A", "A-LRN", "B", "C"))
    return root, R.compared_runs(root)


def test_each_profile_keeps_its_own_numbers_side_by_side(two_profiles):
    _, runs = two_profiles
    assert set(runs) == set(R.COMPARED) and len(runs["cpu"]) == 26 and len(runs["cpu128"]) == 6
    for n in (3, 4, 5, 6):
        tb = R.table_by_profile(n, runs)
        for p in R.COMPARED:  # each profile's columns are that profile's own table
            own = R.table(n, runs[p])
            assert np.allclose(tb[f"{p}: ours top-1"], own["ours top-1"], equal_nan=True)
            assert (tb[f"{p}: seeds"] == own["seeds"]).all()
        shown = R.display_by_profile(tb)
        assert {"paper top-1", "cpu top-1 (95% CI)", "cpu128 top-1 (95% CI)", "cpu128 seeds"} <= set(shown.columns)
    t3 = R.display_by_profile(R.table_by_profile(3, runs)).set_index(["net", "S"])
    assert t3.loc[("C", "256"), "cpu128 seeds"] == 1 and t3.loc[("D", "256"), "cpu128 seeds"] == 0
    assert t3.loc[("D", "256"), "cpu128 top-1 (95% CI)"] == R.NOT_RUN
    assert t3.loc[("D", "256"), "cpu seeds"] == 2 and "±" in t3.loc[("D", "256"), "cpu top-1 (95% CI)"]


def test_a_verdict_changes_with_the_profile_only_where_both_have_one(two_profiles):
    _, runs = two_profiles
    cp = R.claims_by_profile(runs, n_boot=200)
    for p in R.COMPARED:
        assert list(cp[f"{p}: verdict"]) == list(R.claims(runs[p], n_boot=200)["verdict"])
    for _, r in cp.iterrows():
        a, b = r["cpu: verdict"], r["cpu128: verdict"]
        assert r["changes"] == (R.NOT_RUN not in (a, b) and a != b)
    # the claims chapter reads the compared profiles off the frame with the same helper
    assert R.profiles_in(cp) == list(R.COMPARED) == R.profiles_in(R.table_by_profile(3, runs))
    assert (cp["cpu128: verdict"] == R.NOT_RUN).any() and (cp["cpu: verdict"] != R.NOT_RUN).all()
    html = R.verdicts_by_profile(cp)._repr_html_()
    assert "cpu128 verdict" in html and "changes with profile" in html


def test_the_penalty_table_has_a_column_per_profile_and_q(two_profiles):
    _, runs = two_profiles
    pen = R.penalty_by_profile(runs).set_index(["net", "training S"])
    # the fake records: window in the dense pass 12 points over the base, as a crop 4: +8
    assert pen.loc[("C", "384"), "cpu, Q = 384"] == pytest.approx(8.0)
    assert pen.loc[("A", "256"), "cpu128, Q = 256"] == pytest.approx(8.0)  # cpu128 runs every protocol
    assert np.isnan(pen.loc[("A", "256"), "cpu, Q = 256"])  # the cpu plan did not ask for it there


def test_the_study_of_a_profile_is_complete_only_with_every_planned_run(two_profiles):
    root, _ = two_profiles
    every = R.load_runs(None, root)[0]
    assert R.study_complete(every, "cpu", seeds=2) and not R.study_complete(every, "cpu", seeds=3)
    assert not R.study_complete(every, "cpu128", seeds=1)


def _history_run(folder, held, train, lrs, profile="cpu128", n_holdout=475):
    rd = RunDir(folder)
    folder.mkdir(parents=True)
    rows = [dict(epoch=e, train_loss=1.0, train_top1_err=t, holdout_top1_err=h, holdout_top5_err=1.0, lr=lr,
                 seconds=60.0 + e, images_per_s=100.0) for e, (h, t, lr) in enumerate(zip(held, train, lrs), start=1)]
    rd.write_history(rows, HISTORY_COLUMNS)
    return dict(profile=profile, run=folder.name, net="D", train_scale="256", seed=0, path=str(folder),
                **{"data.n_holdout": n_holdout})


def test_convergence_reads_each_lr_phase_and_its_last_five_epochs(tmp_path):
    """A phase still falling by 3 points an epoch is not flat; one that ends level is; the
    slope is the least-squares one over the phase's last five epochs only."""
    held = [60, 50, 40, 37, 34, 31, 28, 25] + [24, 24.5, 24, 24.5, 24, 24.5] + [23, 23, 23]
    train = [50, 45, 40, 38, 36, 34, 32, 30] + [22, 22, 22, 22, 22, 22] + [20, 20, 20]
    lrs = [0.01] * 8 + [0.001] * 6 + [0.0001] * 3
    runs = pd.DataFrame([_history_run(tmp_path / "D-S256-s0", held, train, lrs)])
    conv = R.convergence_table(runs)
    assert list(conv["phase"]) == [1, 2, 3] and list(conv["epochs"]) == [8, 6, 3]
    assert list(conv["lr"]) == [0.01, 0.001, 0.0001]
    assert conv.loc[0, "held-out slope"] == pytest.approx(-3.0) and conv.loc[0, "train slope"] == pytest.approx(-2.0)
    assert conv.loc[1, "held-out slope"] == pytest.approx(0.0, abs=1e-9)
    assert conv.loc[2, "held-out slope"] == pytest.approx(0.0, abs=1e-9)
    # the noise: two standard errors of the slope, were each epoch a binomial draw on 475 images
    p = np.mean(held[3:8]) / 100
    assert conv.loc[0, "noise"] == pytest.approx(2 * 100 * np.sqrt(p * (1 - p) / 475) / np.sqrt(10))
    assert list(conv["flat"]) == [False, True, True]
    shown = R.convergence_display(conv).iloc[0]
    assert shown["flat"] == "2 of 3" and shown["lr 0.01"].startswith("-3.00 ±") and shown["lr 0.01"].endswith("(8)")
    s = R.convergence_summary(conv)["cpu128"]
    assert s == dict(phases=3, flat=2, runs=1, runs_flat=0, worst_held=pytest.approx(0.0, abs=1e-9),
                     worst_train=pytest.approx(0.0, abs=1e-9), worst_train_any=pytest.approx(-2.0))


def test_epoch_cost_is_the_median_epoch_of_each_profile_and_their_ratio(tmp_path):
    runs = {"cpu": pd.DataFrame([_history_run(tmp_path / "cpu" / "D-S256-s0", [50] * 3, [50] * 3, [0.01] * 3,
                                              profile="cpu")]),
            "cpu128": pd.DataFrame([_history_run(tmp_path / "cpu128" / "D-S256-s0", [50] * 5, [50] * 5,
                                                 [0.01] * 5)])}
    cost = R.epoch_cost(runs).set_index("net")
    assert cost.loc["D", "cpu s/epoch"] == 62.0 and cost.loc["D", "cpu128 s/epoch"] == 63.0
    assert cost.loc["D", "cpu128 ÷ cpu"] == pytest.approx(63 / 62)


def test_the_headline_profile_is_cpu128_once_its_three_seeds_are_in(tmp_path, monkeypatch):
    monkeypatch.delenv("VGG_BOOK_PROFILE", raising=False)
    write_fake_runs(tmp_path, profile="cpu", seeds=(0,), nets=("A",))
    write_fake_runs(tmp_path, profile="cpu128", seeds=(0, 1), nets=None)
    assert R.book_profile(tmp_path) == "cpu"
    write_fake_runs(tmp_path, profile="cpu128", seeds=(2,), nets=None)
    assert len(plan(3, profile="cpu128")) == 39 and R.book_profile(tmp_path) == "cpu128"
    monkeypatch.setenv("VGG_BOOK_PROFILE", "cpu")
    assert R.book_profile(tmp_path) == "cpu"


def test_a_book_compares_its_own_profile_with_the_others_that_have_runs(tmp_path, monkeypatch):
    """A book of smoke runs compares nothing (no empty cpu columns); a gpu book puts gpu first."""
    monkeypatch.delenv("VGG_BOOK_PROFILE", raising=False)
    write_fake_runs(tmp_path, profile="smoke", seeds=(0,), nets=("A",))
    assert list(R.compared_runs(tmp_path)) == ["smoke"]
    shown = R.display_by_profile(R.table_by_profile(3, R.compared_runs(tmp_path)))
    assert "smoke top-1 (95% CI)" in shown.columns and not any(c.startswith("cpu") for c in shown.columns)
    write_fake_runs(tmp_path, profile="cpu128", seeds=(0,), nets=("A",))
    monkeypatch.setenv("VGG_BOOK_PROFILE", "smoke")
    assert list(R.compared_runs(tmp_path)) == ["smoke", "cpu128"]


def test_history_keeps_a_fine_tunes_last_lr(tmp_path):
    """Three drops from 1e-3 end at 1e-6; five decimals wrote that as 0.0, and the book's
    convergence table then showed a phase at lr 0."""
    row = _history_run(tmp_path / "D-S384-s0", [30, 29, 29], [25, 24, 24], [1e-3, 1e-5, 1e-6])
    assert [r["lr"] for r in RunDir(row["path"]).history()] == [1e-3, 1e-5, 1e-6]
    conv = R.convergence_table(pd.DataFrame([row]))
    assert list(conv["lr"]) == [1e-3, 1e-5, 1e-6]
