"""How --status prices what is left under the plateau rule (vgg.ops.progress)."""
import pytest
from test_study import _complete

from vgg.ops.progress import progress

HEAD = "epoch,train_loss,train_top1_err,holdout_top1_err,holdout_top5_err,lr,seconds,images_per_s\n"


def _folder(root, name, epoch_s, n, complete):
    f = root / "cpu128" / name
    f.mkdir(parents=True)
    (f / "history.csv").write_text(HEAD + "".join(f"{e},1,50,50,10,0.01,{epoch_s},150\n" for e in range(1, n + 1)))
    (f / "checkpoint.pt").write_bytes(b"")  # complete: its children need no retraining; else it resumes
    if complete:
        _complete(f, eval_seconds=0.0)


def test_plateau_runs_are_priced_at_the_length_finished_runs_took_not_the_cap(tmp_path):
    _folder(tmp_path, "A-S256-s0", 30, 50, complete=True)
    _folder(tmp_path, "D-S256-s0", 40, 60, complete=True)
    _folder(tmp_path, "D-S384-s0", 40, 30, complete=True)  # a fine-tune: its own median
    _folder(tmp_path, "D-S256-s1", 40, 58, complete=False)  # past the median, still training
    rows = {r["run"]: r for r in progress("cpu128", 2, tmp_path)}
    assert rows["A-S256-s1"]["epochs_cap"] == 90  # the cap stays what the profile allows
    assert rows["A-S256-s1"]["seconds_left"] == pytest.approx(55 * 30)  # median of 50 and 60 epochs
    assert rows["D-S384-s1"]["seconds_left"] == pytest.approx(30 * 40)
    assert rows["D-S256-s1"]["seconds_left"] == pytest.approx(1 * 40)  # at least one epoch to go
    assert rows["E-S256-s0"]["seconds_left"] is None  # no E epoch on record


def test_with_no_finished_run_the_cap_prices_it(tmp_path):
    _folder(tmp_path, "A-S256-s0", 30, 5, complete=False)
    rows = {r["run"]: r for r in progress("cpu128", 1, tmp_path)}
    assert rows["A-S256-s0"]["seconds_left"] == pytest.approx(85 * 30)
    assert rows["B-5x5-S256-s0"]["seconds_left"] is None
