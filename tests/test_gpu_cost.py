"""One seed of the study in GPU-hours (vgg.ops.gpu.study_cost), from D's rate and the records."""
import json

import pytest

from vgg.ops import gpu
from vgg.spec import plan


def test_study_cost_prices_each_run_from_its_epochs_and_flops(tmp_path):
    runs = tmp_path / "runs"
    (runs / "cpu128" / "A-S256-s0").mkdir(parents=True)
    (runs / "cpu128" / "A-S256-s0" / "history.csv").write_text("epoch\n" + "".join(f"{i}\n" for i in range(1, 51)))
    (runs / "cpu128" / "A-S256-s0" / "metrics.json").write_text(json.dumps(
        {"status": "complete", "eval_seconds": 30.0, "train": {"seconds": 100.0}}))
    cost = gpu.study_cost({"cpu128": 1000.0}, runs)["cpu128"]
    n = round(gpu.IMAGENETTE_TRAIN * 0.95)
    want = 0.0
    for r in plan(1, profile="cpu128"):
        epochs = 50 if r.name == "A-S256-s0" else (60 if r.row.parent else 90)  # on record, else the caps
        want += epochs * n * gpu._flops(r.net, "cpu128") / (1000.0 * gpu._flops("D", "cpu128"))
    assert cost["train_h"] == pytest.approx(want / 3600)
    assert cost["eval_ratio"] == pytest.approx(0.3) and cost["total_h"] == pytest.approx(1.3 * want / 3600)
    assert cost["epochs_from"] == ["cap", "runs/cpu128"]


def test_assumed_rates_are_flop_bound_at_the_paper_scale_and_launch_bound_below():
    r = gpu.assumed_rates()
    assert r["gpu"] == pytest.approx(gpu.ASSUMED_MFU * gpu.H200_BF16_PEAK / gpu._flops("D", "gpu"))
    assert r["cpu128"] == pytest.approx(64 / gpu.STEP_FLOOR_S)  # batch 64 per 3 ms step
