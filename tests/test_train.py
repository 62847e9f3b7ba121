"""Training (Sect. 3.1): learns, resumes bit for bit, refuses bad parents and typos."""
import json

import pytest
import torch
import torch.nn.functional as F

import vgg.run as run_mod
from imagefolder import make_image_folder
from vgg import data as D
from vgg.config import RunConfig
from vgg.model import build
from vgg.ops import bench
from vgg.profiles import PROFILES
from vgg.run import holdout_crops, run_experiment
from vgg.rundir import RunDir
from vgg.train import fit

SMOKE = PROFILES["smoke"]


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    """Big enough for several batches per epoch: 3 classes x 24 train images."""
    return make_image_folder(tmp_path_factory.mktemp("train_data"), n_classes=3, train_per_class=24,
                             val_per_class=4, seed=1)


def _cfg(tmp_path, data, name="run", **kw):
    base = dict(net="A", train_scale="256", seed=0, profile="smoke", epochs=2, data=str(data),
                out=str(tmp_path / name), threads=1)
    return RunConfig.from_dict({**base, **kw})


def test_one_epoch_lowers_the_loss(train_data, tmp_path):
    torch.set_num_threads(1)
    imgs = D.load_split(train_data, "train", progress=False)
    stats = D.colour_stats(imgs)
    torch.manual_seed(0)
    model = build("A", num_classes=3, width=SMOKE.width, crop=SMOKE.crop)
    x, y = holdout_crops(imgs, torch.arange(len(imgs)), SMOKE.px(256), SMOKE.crop, stats.mean)

    def loss():
        model.eval()
        with torch.no_grad():
            return F.cross_entropy(model(x), y).item()

    before = loss()
    batches = D.TrainBatches(imgs, None, crop=SMOKE.crop, scale=(SMOKE.px(256),) * 2, batch_size=8,
                             stats=stats, seed=0)
    result = fit(model, batches, (x[:6], y[:6]), checkpoint=tmp_path / "checkpoint.pt", lr=0.01, momentum=0.9,
                 weight_decay=5e-4, max_epochs=1, patience=1, max_lr_drops=3, seed=0,
                 device=torch.device("cpu"), progress=False)
    assert result.epochs == 1 and result.stopped == "epoch cap"
    assert loss() < 0.9 * before


def test_interrupted_run_resumes_to_the_same_weights(train_data, tmp_path, monkeypatch):
    whole = run_experiment(_cfg(tmp_path, train_data, "whole", epochs=3), progress=False)

    real_fit = run_mod.fit

    def interrupted_fit(*args, on_epoch_end=None, **kwargs):
        def stop(epoch, history):
            on_epoch_end(epoch, history)
            if epoch == 2:
                raise KeyboardInterrupt("simulated crash after epoch 2")
        return real_fit(*args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(run_mod, "fit", interrupted_fit)
    cfg = _cfg(tmp_path, train_data, "resumed", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, progress=False)
    assert not (tmp_path / "resumed" / "metrics.json").exists()  # nothing looks finished
    assert len((tmp_path / "resumed" / "history.csv").read_text().splitlines()) == 1 + 2  # curves so far
    with pytest.raises(ValueError, match="other parameters.*lr: checkpoint 0.01 vs now 0.005"):
        run_experiment(_cfg(tmp_path, train_data, "resumed", epochs=3, lr=0.005), progress=False)
    monkeypatch.setattr(run_mod, "fit", real_fit)
    resumed = run_experiment(cfg, progress=False)

    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole["eval"].keys() == resumed["eval"].keys()
    for k in whole["eval"]:
        assert whole["eval"][k]["top1_err"] == resumed["eval"][k]["top1_err"]
    hist = lambda d: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
                      for r in torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["history"]]
    assert hist("whole") == hist("resumed")
    with pytest.raises(ValueError, match="complete run made with other parameters.*momentum"):
        run_experiment(_cfg(tmp_path, train_data, "whole", epochs=3, momentum=0.5), progress=False)


def test_run_folder_is_complete_and_carries_provenance(train_data, tmp_path):
    torch.set_num_threads(2)  # the process's count before the run: the record must say the run's
    m = run_experiment(_cfg(tmp_path, train_data, epochs=1), progress=False)
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "history.csv", "probs.npz", "env.json", "checkpoint.pt",
                                               "weights.pt"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["status"] == "complete" and saved["net"] == "A" and saved["train_scale"] == "256"
    assert set(saved["eval"]) == {"dense@256", "centre-crop@256", "multi-scale"}
    assert saved["provenance"]["git_commit"] and saved["provenance"]["torch"] == torch.__version__
    assert saved["provenance"]["torch_threads"] == 1 == json.loads((out / "env.json").read_text())["torch_threads"]
    assert saved["config"]["epochs"] == 1 and m["train"]["epochs"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written files


def test_init_from_loads_the_parents_weights(train_data, tmp_path):
    run_experiment(_cfg(tmp_path, train_data, "parent", epochs=1), progress=False)
    parent = RunDir(tmp_path / "parent")
    child = build("A", num_classes=3, width=SMOKE.width, crop=SMOKE.crop)
    parent.load_into(child)
    parent_state = torch.load(tmp_path / "parent" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(v, parent_state[k]) for k, v in child.state_dict().items())
    # without its checkpoint (a fresh clone) the parent's float16 weights.pt is what loads
    (tmp_path / "parent" / "checkpoint.pt").unlink()
    parent.load_into(child)
    assert all(torch.allclose(v, parent_state[k], rtol=1e-3, atol=1e-4) for k, v in child.state_dict().items())
    fine = run_experiment(_cfg(tmp_path, train_data, "child", epochs=1, init_from=str(tmp_path / "parent"),
                               lr=1e-3), progress=False)
    assert fine["model"]["init"] == f"weights of {tmp_path / 'parent'}"

    with pytest.raises(ValueError, match="another network.*net: parent 'A' vs 'B'"):
        parent.load_into(build("B", num_classes=3, width=SMOKE.width, crop=SMOKE.crop))
    with pytest.raises(ValueError, match="width: parent 0.125 vs 0.25"):
        parent.load_into(build("A", num_classes=3, width=0.25, crop=SMOKE.crop))
    with pytest.raises(FileNotFoundError, match="not a complete run"):  # before any work
        run_experiment(_cfg(tmp_path, train_data, "orphan", init_from=str(tmp_path / "nowhere")), progress=False)


def test_a_typo_in_a_config_key_raises():
    with pytest.raises(TypeError, match="unknown run parameter.*'lerning_rate'"):
        RunConfig.from_dict(dict(net="A", lerning_rate=0.1))
    with pytest.raises(TypeError, match="did you mean 'train_scale'"):
        RunConfig.from_dict(dict(train_scal="256"))
    with pytest.raises(TypeError, match="seed must be int"):
        RunConfig.from_dict(dict(seed="zero"))
    with pytest.raises(ValueError, match="valid nets"):
        RunConfig.from_dict(dict(net="F"))
    with pytest.raises(ValueError, match="train_scale 'abc'"):
        RunConfig.from_dict(dict(train_scale="abc"))


def test_divergence_marks_the_run_failed(train_data, tmp_path):
    from vgg.train import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="became"):
        run_experiment(_cfg(tmp_path, train_data, lr=10.0), progress=False)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "failed" and "eval" not in m and "became" in m["error"]
    assert not (tmp_path / "run" / "probs.npz").exists()
    # a lower lr in the same folder is a new attempt, which finishes
    assert run_experiment(_cfg(tmp_path, train_data, epochs=1), progress=False)["status"] == "complete"


def _tiny_a(train_data):
    """A at the smoke scale, its training batches and an empty held-out slice."""
    imgs = D.load_split(train_data, "train", progress=False)
    stats = D.colour_stats(imgs)
    model = build("A", num_classes=3, width=SMOKE.width, crop=SMOKE.crop)
    batches = D.TrainBatches(imgs, torch.arange(16), crop=SMOKE.crop, scale=(SMOKE.px(256),) * 2,
                             batch_size=8, stats=stats, seed=0)
    empty = (torch.zeros(0, 3, SMOKE.crop, SMOKE.crop), torch.zeros(0, dtype=torch.long))
    return model, batches, empty


def test_lr_is_divided_on_plateaus_and_the_next_plateau_stops(train_data, tmp_path):
    """Sect. 3.1: divide by 10 when the monitor stops improving, 3 times (here 2), then stop.
    An empty held-out slice never improves, so with patience 0 every epoch after the first
    is a plateau."""
    model, batches, empty = _tiny_a(train_data)
    result = fit(model, batches, empty, checkpoint=tmp_path / "checkpoint.pt", lr=0.01, momentum=0.9, weight_decay=5e-4,
                 max_epochs=10, patience=0, max_lr_drops=2, seed=0, device=torch.device("cpu"),
                 progress=False)
    assert result.stopped == "plateau" and result.lr_drops == 2
    # epoch 1 sets the best; 2 and 3 bring nothing (lr / 10 after each); 4 too: stop
    assert [r["lr"] for r in result.history] == pytest.approx([0.01, 0.01, 1e-3, 1e-4])


def test_the_plateau_rule_counts_from_the_first_full_monitor_window(train_data, tmp_path, monkeypatch):
    """cpu128's monitor is a mean over the last epochs; before it has that many, a mean of
    fewer is noisier, and a lucky epoch 1 kept as the best ended four fine-tunes' first lr
    phase at epoch 5 (issue 19). The rule starts once the window is full: epoch 1's 10% is
    never the best to beat."""
    import vgg.train as train_mod
    errors = iter([10.0, 30.0, 30.0, 12.0, 12.0, 12.0, 12.0, 12.0])
    monkeypatch.setattr(train_mod, "topk_errors", lambda *a: (next(errors), 0.0))
    model, batches, empty = _tiny_a(train_data)
    result = fit(model, batches, empty, checkpoint=tmp_path / "checkpoint.pt", lr=0.01, momentum=0.9, weight_decay=5e-4,
                 max_epochs=8, patience=0, max_lr_drops=1, seed=0, device=torch.device("cpu"), progress=False,
                 monitor_window=3, plateau_threshold=0.25)
    # means from epoch 3: 23.3 (the first best), 24.0 (worse: lr / 10), 18.0, 12.0 (better),
    # 12.0 (a plateau after the last division: stop). Counting epochs 1-2 (means 10, 20) would
    # have divided after epoch 2 and stopped after epoch 3.
    assert result.stopped == "plateau" and result.lr_drops == 1
    assert [r["lr"] for r in result.history] == pytest.approx([0.01] * 4 + [1e-3] * 3)


def test_a_fixed_schedule_divides_after_its_steps_runs_its_epochs_and_resumes(train_data, tmp_path):
    """The cpu profile's schedule: lr / 10 after fixed epochs whatever the monitor says,
    max_epochs in all; a run stopped in the middle resumes onto the same schedule."""
    imgs = D.load_split(train_data, "train", progress=False)
    stats = D.colour_stats(imgs)
    empty = (torch.zeros(0, 3, SMOKE.crop, SMOKE.crop), torch.zeros(0, dtype=torch.long))

    def run(max_epochs):
        torch.manual_seed(0)
        model = build("A", num_classes=3, width=SMOKE.width, crop=SMOKE.crop)
        batches = D.TrainBatches(imgs, torch.arange(16), crop=SMOKE.crop, scale=(SMOKE.px(256),) * 2,
                                 batch_size=8, stats=stats, seed=0)
        return fit(model, batches, empty, checkpoint=tmp_path / "checkpoint.pt", lr=0.01, momentum=0.9, weight_decay=5e-4,
                   max_epochs=max_epochs, patience=0, max_lr_drops=1, seed=0, device=torch.device("cpu"),
                   progress=False, lr_steps=(2, 3))

    first = run(2)  # stops after epoch 2, as an interrupted run would
    assert first.stopped == "schedule end" and [r["lr"] for r in first.history] == pytest.approx([0.01, 0.01])
    # patience 0 on a never-improving monitor would stop a plateau run at once; this one goes on
    result = run(4)
    assert result.stopped == "schedule end" and result.epochs == 4 and result.lr_drops == 2
    assert [r["lr"] for r in result.history] == pytest.approx([0.01, 0.01, 1e-3, 1e-4])


def test_the_cpu_profile_uses_a_fixed_schedule_within_its_epochs():
    from vgg.profiles import PROFILES
    cpu = PROFILES["cpu"]
    assert cpu.lr_steps == (30, 40) and cpu.max_epochs == 45
    assert cpu.lr_steps_finetune == (10,) and cpu.max_epochs_finetune == 15
    for steps, epochs in ((cpu.lr_steps, cpu.max_epochs), (cpu.lr_steps_finetune, cpu.max_epochs_finetune)):
        assert list(steps) == sorted(steps) and steps[-1] < epochs
    scratch = RunConfig.from_dict(dict(net="C", profile="cpu"))
    child = RunConfig.from_dict(dict(net="C", profile="cpu", train_scale="384", init_from="runs/cpu/C-S256-s0"))
    assert scratch.lr_steps == (30, 40) and child.lr_steps == (10,) and child.max_epochs == 15
    with pytest.raises(ValueError, match="patience is for the plateau rule.*after epochs 30, 40"):
        RunConfig.from_dict(dict(net="C", profile="cpu", patience=5))  # would be silently ignored
    assert RunConfig.from_dict(dict(net="C", profile="smoke", patience=5)).patience == 5


def test_the_stall_check_catches_the_dead_pilot_and_no_learning_run():
    """is_stalled on real histories: Glorot B-5x5 died in its first steps (runs/cpu-pilot);
    every run that learned is far below chance by epoch 3."""
    import csv

    from vgg.io import ROOT
    from vgg.train import is_stalled

    def history(path):
        with open(path, newline="") as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def learned(path):  # a run that finished (a stalled one is recorded as failed)
        return RunDir(path.parent).is_complete()

    dead = history(ROOT / "runs/cpu-pilot/B-5x5-S256-s0/history.csv")
    assert is_stalled(dead[:3], 10, 3)
    assert not is_stalled(dead[:3], 10, None) and not is_stalled(dead[:4], 10, 3)  # checked once, at epoch 3
    learning = [p for p in sorted(ROOT.glob("runs/cpu*/*/history.csv")) if "cpu-pilot/B-5x5" not in str(p)
                and learned(p)]
    assert len(learning) >= 8
    for path in learning:
        h = history(path)
        if len(h) >= 3:
            assert not is_stalled(h[:3], 10, 3), path


def test_a_net_at_chance_fails_at_its_stall_epoch(train_data, tmp_path):
    """A net with a zeroed last layer and lr 0 predicts one class: 2/3 error on 3 balanced
    classes, which is chance. fit stops it and sets its checkpoint aside."""
    from vgg.train import TrainingStalled

    imgs = D.load_split(train_data, "train", progress=False)
    stats = D.colour_stats(imgs)
    model = build("A", num_classes=3, width=SMOKE.width, crop=SMOKE.crop)
    torch.nn.init.zeros_(model.classifier[-1].weight)
    torch.nn.init.zeros_(model.classifier[-1].bias)
    x, y = holdout_crops(imgs, torch.arange(6), SMOKE.px(256), SMOKE.crop, stats.mean)
    batches = D.TrainBatches(imgs, None, crop=SMOKE.crop, scale=(SMOKE.px(256),) * 2, batch_size=8,
                             stats=stats, seed=0)
    kw = dict(checkpoint=tmp_path / "checkpoint.pt", lr=0.0, momentum=0.9, weight_decay=5e-4, max_epochs=3, patience=1,
              max_lr_drops=3, seed=0, device=torch.device("cpu"), progress=False)
    with pytest.raises(TrainingStalled, match=r"66\.7% after 1 epochs, chance level for 3 classes.*init='paper'"):
        fit(model, batches, (x, y), stall_epochs=1, **kw)
    assert (tmp_path / "checkpoint.stalled.pt").exists() and not (tmp_path / "checkpoint.pt").exists()
    # without the check the same net trains on, at chance
    result = fit(model, batches, (x, y), stall_epochs=None, **kw)
    assert result.epochs == 3 and result.history[-1]["train_top1_err"] == pytest.approx(200 / 3)


def test_the_real_profiles_check_for_a_dead_net_before_the_first_lr_step():
    for name in ("cpu", "gpu"):
        assert PROFILES[name].stall_epochs == 3
    assert PROFILES["cpu"].stall_epochs < PROFILES["cpu"].lr_steps[0]
    assert PROFILES["smoke"].stall_epochs is None  # tiny data may sit at chance for a while


def test_a_finished_run_gains_new_protocols_from_its_weights_and_keeps_the_old(train_data, tmp_path):
    """A new protocol is a new name: a finished run is evaluated with it later, from its
    weights alone (as in a fresh clone), its old records untouched; asking again is a no-op."""
    import subprocess
    import sys

    from vgg.io import ROOT

    out = tmp_path / "smoke" / "A-S256-s0"
    first = run_experiment(_cfg(tmp_path, train_data, "smoke/A-S256-s0", epochs=1), progress=False)
    (out / "checkpoint.pt").unlink()
    cli = subprocess.run([sys.executable, "-m", "vgg", "evaluate", str(out), "-P", "windows-as-crops",
                          "-P", "dense-softmax"], capture_output=True, text=True, cwd=ROOT)
    assert cli.returncode == 0, cli.stderr
    assert "A-S256-s0: dense@256" in cli.stdout and "windows-as-crops@256" in cli.stdout
    again = json.loads((out / "metrics.json").read_text())
    assert {k: again["eval"][k] for k in first["eval"]} == first["eval"] and again["train"] == first["train"]
    assert set(again["eval"]) - set(first["eval"]) == {"windows-as-crops@256", "dense-softmax@256"}
    rec = again["eval"]["windows-as-crops@256"]
    assert rec["n_images"] == again["data"]["n_val"] and {"window_in_dense", "window_as_crop"} <= set(rec)
    # its centre crop is the run's own (from float16 weights: equal up to a flipped image or so)
    assert rec["centre_crop"] == pytest.approx(again["eval"]["centre-crop@256"]["top1_err"], abs=100 / rec["n_images"] + 1e-9)
    assert set(RunDir(out).probs()["probs"]) == set(again["eval"])
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    run_experiment(_cfg(tmp_path, train_data, "smoke/A-S256-s0", epochs=1,
                        protocols=["dense", "windows-as-crops"]), progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing to do: no file touched
    bad = subprocess.run([sys.executable, "-m", "vgg", "evaluate", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "not complete run folders" in bad.stderr


def test_the_mfu_is_never_printed_above_one_and_a_loaded_machine_is_warned_of(capsys, monkeypatch):
    assert bench.mfu_text(0.42).strip() == "0.42"
    assert float(bench.mfu_text(1.09).split()[0]) == 1.0 and "capped" in bench.mfu_text(1.09)
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (1.7, 1.5, 1.2))
    bench.warn_if_loaded()
    assert "loaded (load average 1.7" in capsys.readouterr().out


def test_bench_gpu_without_a_gpu_says_so_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.bench_gpu() == {}
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA GPU" in out
