"""The study through papermill: complete run folders, idempotent, resumable, robust."""
import json
import math
import statistics
from typing import Optional
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from imagefolder import make_image_folder
from vgg.config import DEFAULTS, RunConfig
from vgg.ops.progress import format_progress, progress, seconds_left, time_left, wall_seconds
from vgg.rundir import RunDir
from vgg.spec import RUNS, Planned, Run, name_of, plan
from vgg.study import NOTEBOOK, chain_seconds, run_study, stale_parents

ROOT = Path(__file__).resolve().parents[1]


def _complete(folder: Path, **extra) -> None:
    """A minimal complete metrics.json (what RunDir accepts as a result)."""
    folder.mkdir(parents=True, exist_ok=True)
    net, _, rest = folder.name.partition("-S")
    (folder / "metrics.json").write_text(json.dumps(dict(
        run=folder.name, net=net, train_scale=rest.rsplit("-s", 1)[0], seed=int(rest.rsplit("-s", 1)[1]),
        status="complete", eval={}, **extra)))


def _runs(*specs) -> list[Planned]:
    """Planned runs from (net, scale, seed[, parent scale]) tuples: rows of a temporary spec."""
    return [Planned(Run(net, scale, parent=rest[0] if rest else None), seed) for net, scale, seed, *rest in specs]


def test_plan_covers_tables_3_to_6_with_the_init_chain():
    runs = plan(1)
    names = [r.name for r in runs]
    assert len(runs) == 13 and len(set(names)) == 13
    assert {r.net for r in runs} == {"A", "A-LRN", "B", "B-5x5", "C", "D", "E"}
    by = {r.name: r for r in runs}
    for net in "CDE":
        assert by[f"{net}-S384-s0"].init_from == f"{net}-S256-s0" and by[f"{net}-S384-s0"].params()["lr"] == 1e-3
        assert by[f"{net}-S256-512-s0"].init_from == f"{net}-S384-s0"
        assert names.index(f"{net}-S256-s0") < names.index(f"{net}-S384-s0") < names.index(f"{net}-S256-512-s0")
        assert "windows-as-crops" in by[f"{net}-S384-s0"].protocols
    assert {r.name for r in runs if "multi-crop" in r.protocols} == {"D-S256-512-s0", "E-S256-512-s0"}
    assert len(plan(3)) == 39 and plan([2])[0].name == "A-S256-s2"
    for r in runs:  # the folder the notebook writes is the plan's name for it
        assert name_of(RunConfig.from_dict(r.params())) == r.name


def test_at_cpu128_every_net_but_a_takes_the_papers_a_init():
    """Sect. 3.1 at the profile with the paper's init: A and A-LRN from random init, B-E (and
    B-5x5) with A's layers; no run name carries a tag for what is its profile's default."""
    runs = {r.name: r for r in plan([0], profile="cpu128")}
    assert set(runs) == {p.name.replace("-ainit", "") for p in plan([0])}
    assert runs["A-S256-s0"].parents == runs["A-LRN-S256-s0"].parents == ()
    for name in ("B-S256-s0", "C-S256-s0", "D-S256-s0", "E-S256-s0"):
        assert runs[name].parents == ("A-S256-s0",)
        p = runs[name].params()
        assert p["init_a"] == "runs/cpu128/A-S256-s0" and name_of(RunConfig.from_dict(p)) == name
    # B-5x5 (fewer weight layers than A) trains from N(0, 0.01) alone there: with A's FC head it
    # diverged (Glorot convs) or sat at chance (N(0, 0.01) convs), runs/cpu128-pilot
    b5 = runs["B-5x5-S256-s0"]
    assert b5.parents == () and "init_a" not in b5.params() and name_of(RunConfig.from_dict(b5.params())) == b5.name
    assert RunConfig.from_dict(b5.params()).init_scheme == "paper"
    with pytest.raises(ValueError, match="set init_a"):  # at the cpu profile it still needs its A
        RunConfig(net="B-5x5", init="paper")
    assert runs["D-S384-s0"].parents == ("D-S256-s0",)  # a fine-tune starts from its parent alone


def test_b5x5_gets_the_papers_a_init_from_the_same_seeds_a():
    """Glorot B-5x5 dies in epoch 1 at the cpu scale; it takes the paper's A-init instead."""
    runs = plan([1])
    names = [r.name for r in runs]
    b5 = next(r for r in runs if r.net == "B-5x5")
    assert b5.name == "B-5x5-S256-ainit-s1" and b5.parents == ("A-S256-s1",)
    assert names.index("A-S256-s1") < names.index(b5.name)
    params = b5.params("cpu")
    assert params["init"] == "paper" and params["init_a"] == "runs/cpu/A-S256-s1"
    assert name_of(RunConfig.from_dict(params)) == b5.name  # the folder the notebook writes
    assert all("init_a" not in r.params() for r in runs if r.net != "B-5x5")


def test_an_ablation_is_one_spec_row_with_a_folder_of_its_own(tmp_path, monkeypatch):
    """D at another lr: one row in a temporary spec. Its name says so (the plan, the CLI and
    the notebook agree on it), so it never lands in the baseline's folder."""
    runs = RUNS + (Run("D", "256", overrides=(("lr", 0.003),)),)
    planned = plan(1, runs=runs)
    extra = planned[-1]
    assert extra.name == "D-S256-lr0.003-s0" and extra.params()["lr"] == 0.003 and extra.parents == ()
    assert len({r.name for r in planned}) == 14
    assert name_of(RunConfig.from_dict(extra.params())) == extra.name
    assert name_of(RunConfig.from_dict(dict(net="D", lr=0.01))) == "D-S256-s0"  # the default: the baseline
    started = _fake_execute(monkeypatch)
    run_study("smoke", runs=[extra], runs_dir=tmp_path, echo=lambda *_: None)
    assert started == ["D-S256-lr0.003-s0"] and RunDir(tmp_path / "smoke" / "D-S256-lr0.003-s0").is_complete()
    # a spec row is checked when it is written: a misspelt field or a bad value fails at import
    with pytest.raises(TypeError, match="unknown run parameter|unexpected keyword"):
        Run("D", "256", overrides=(("lerning_rate", 0.003),))
    with pytest.raises(ValueError, match="unknown protocol"):
        Run("D", "256", protocols=("10-crop",))


def test_notebook_parameters_are_the_config_defaults_with_comments():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["mystnb"] == {"execution_mode": "off"}  # the book never re-executes runs
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    ns = {"Optional": Optional}
    exec(cell.source, ns)
    assert {k: ns[k] for k in DEFAULTS} == DEFAULTS
    help_text = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(NOTEBOOK)],
                               capture_output=True, text=True, check=True).stdout
    for name in ("net", "train_scale", "seed", "profile", "epochs", "init_from", "data", "device", "out"):
        assert f"  {name}: " in help_text
    assert "a configuration of Table 1" in help_text and "jittered" in help_text


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    """The whole smoke study (13 runs) through papermill, once for this module."""
    data = make_image_folder(tmp_path_factory.mktemp("study_data"), n_classes=3, train_per_class=8,
                             val_per_class=2, seed=2)
    runs_dir = tmp_path_factory.mktemp("runs")
    log: list[str] = []
    outcome = run_study("smoke", 1, runs_dir=runs_dir, data=str(data), echo=log.append)
    return runs_dir, data, outcome, log


def test_smoke_study_runs_end_to_end(smoke_study):
    runs_dir, _, outcome, log = smoke_study
    assert outcome == {r.name: "complete" for r in plan(1)}, "\n".join(log)
    for r in plan(1):
        folder = runs_dir / "smoke" / r.name
        m = json.loads((folder / "metrics.json").read_text())
        assert m["status"] == "complete" and m["run"] == r.name
        assert {"history.csv", "probs.npz", "env.json", "run_config.ipynb", "weights.pt"} <= {p.name for p in folder.iterdir()}
        executed = nbformat.read(folder / "run_config.ipynb", as_version=4)
        assert executed.metadata["mystnb"] == {"execution_mode": "off"}
        assert executed.metadata["papermill"]["parameters"]["net"] == r.net
        assert [e["protocol"] for e in m["eval"].values()] == list(r.protocols)  # the spec row's, in order
    child = json.loads((runs_dir / "smoke" / "D-S384-s0" / "metrics.json").read_text())
    assert child["config"]["init_from"].endswith("D-S256-s0") and child["config"]["lr"] == 1e-3
    b5 = json.loads((runs_dir / "smoke" / "B-5x5-S256-ainit-s0" / "metrics.json").read_text())
    assert b5["config"]["init_a"].endswith("A-S256-s0")
    assert b5["model"]["init"].startswith("paper: N(0, 0.01) + from A: classifier.0")


def test_second_study_does_nothing_and_a_deleted_result_reruns_exactly_that_run(smoke_study):
    runs_dir, data, _, _ = smoke_study
    again = run_study("smoke", 1, runs_dir=runs_dir, data=str(data), echo=lambda s: None)
    assert set(again.values()) == {"skipped"}
    (runs_dir / "smoke" / "B-S256-s0" / "metrics.json").unlink()
    third = run_study("smoke", 1, runs_dir=runs_dir, data=str(data), echo=lambda s: None)
    assert {k for k, v in third.items() if v != "skipped"} == {"B-S256-s0"}
    assert third["B-S256-s0"] == "complete"


def test_a_lost_parent_checkpoint_is_trained_again_before_its_child(smoke_study):
    """A fresh clone has no checkpoints: a child still to run needs its parent trained again."""
    runs_dir, data, _, _ = smoke_study
    folder = runs_dir / "smoke" / "D-S384-s0"
    old = json.loads((folder / "metrics.json").read_text())
    old_seconds = round(sum(float(line.split(",")[6]) for line in
                            (folder / "history.csv").read_text().splitlines()[1:]), 1)
    (folder / "checkpoint.pt").unlink()
    (folder / "weights.pt").unlink()
    (runs_dir / "smoke" / "D-S256-512-s0" / "metrics.json").unlink()
    log: list[str] = []
    again = run_study("smoke", 1, runs_dir=runs_dir, data=str(data), echo=log.append)
    assert {k for k, v in again.items() if v != "skipped"} == {"D-S384-s0", "D-S256-512-s0"}, "\n".join(log)
    assert set(again.values()) == {"skipped", "complete"}
    assert "D-S384-s0: complete, but its weights are gone and D-S256-512-s0 start(s) from them" in "\n".join(log)
    assert log.index("  D-S384-s0: running") < log.index("  D-S256-512-s0: running")
    entry, = json.loads((folder / "superseded.json").read_text())
    assert entry["run"] == "D-S384-s0" and entry["git_commit"] == old["provenance"]["git_commit"]
    assert entry["top1_err"] == {k: v["top1_err"] for k, v in old["eval"].items()}
    # (a smoke epoch can take under 0.05 s: the old history's own sum, not "> 0")
    assert entry["epochs"] == 1 and entry["train_seconds"] == old_seconds and "windows-as-crops@384" in entry["top1_err"]
    assert (folder / "checkpoint.pt").exists() and (folder / "weights.pt").exists()
    assert json.loads((folder / "metrics.json").read_text())["status"] == "complete"


def test_each_s384_and_jittered_run_is_evaluated_with_windows_as_crops(smoke_study):
    runs_dir, _, _, _ = smoke_study
    for r in plan(1):
        results = RunDir(runs_dir / "smoke" / r.name).results()
        assert ("windows-as-crops@384" in results) == (r.train_scale != "256"), r.name
        if r.train_scale != "256":
            assert 0 <= results["windows-as-crops@384"]["window_in_dense"] <= 100


def test_a_failing_run_is_reported_and_the_others_complete(tmp_path):
    """A-S256-s1's folder is owned by another live process: that run fails at once (naming
    the holder), its child is blocked, the others complete."""
    data = make_image_folder(tmp_path / "data", n_classes=2, train_per_class=8, val_per_class=2)
    runs = _runs(("A", "256", 0), ("A", "256", 1), ("A", "384", 1, "256"), ("A-LRN", "256", 0))
    held = tmp_path / "runs" / "smoke" / "A-S256-s1"
    holder = _hold_lock(held)
    try:
        log: list[str] = []
        outcome = run_study("smoke", runs=runs, runs_dir=tmp_path / "runs", data=str(data), echo=log.append)
    finally:
        holder.kill()
    assert outcome == {"A-S256-s0": "complete", "A-S256-s1": "failed", "A-S384-s1": "blocked",
                       "A-LRN-S256-s0": "complete"}
    text = "\n".join(log)
    assert "A-S256-s1: failed" in text and f"is in use by process {holder.pid}" in text
    assert "1 failed" in text and "1 blocked" in text


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that owns ``folder`` (RunDir.lock) until killed."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from vgg.rundir import RunDir\n"
                               f"with RunDir({str(folder)!r}).lock():\n    print('held', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_two_runs_on_one_folder_the_second_fails_at_once_and_a_killed_ones_lock_is_taken_over(tmp_path):
    data = make_image_folder(tmp_path / "data", n_classes=2, train_per_class=8, val_per_class=2)
    out = tmp_path / "one"
    cmd = [sys.executable, "-m", "vgg", "run", "A", "--profile", "smoke", "--out", str(out), "-p", f"data={data}"]
    holder = _hold_lock(out)
    assert RunDir(out).state() == "running" and RunDir(out).locked_by() == holder.pid
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert second.returncode == 2 and f"{out} is in use by process {holder.pid}" in second.stderr
    assert not (out / "run_config.ipynb").exists()  # refused before a kernel started
    holder.send_signal(9)  # kill -9: the kernel drops its lock; the next run takes it over
    holder.wait()
    assert RunDir(out).state() == "missing"
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert RunDir(out).is_complete() and RunDir(out).locked_by() is None


def test_the_study_passes_parent_folders_relative_to_the_repository(tmp_path, monkeypatch):
    """The CLI makes --runs-dir absolute; the parameters, which land in metrics.json and the
    recipe, still name parents inside the repository relative to it."""
    import vgg.study as study
    seen = []
    monkeypatch.setattr(study, "ROOT", tmp_path)
    monkeypatch.setattr(study, "execute", lambda params, out_dir, **kw: (seen.append(params), _complete(out_dir)))
    monkeypatch.setattr(study, "find_data", lambda *a: None)
    runs = _runs(("D", "256", 0), ("D", "384", 0, "256"))
    run_study("smoke", runs=runs, runs_dir=tmp_path / "runs", echo=lambda *_: None)
    assert seen[1]["init_from"] == "runs/smoke/D-S256-s0"


def test_a_run_with_two_parents_waits_for_both_and_is_blocked_by_the_one_that_fails(tmp_path, monkeypatch):
    """The scheduler alone (execute faked: it writes a complete metrics.json, or fails for lr < 0)."""
    import vgg.study as study
    from types import SimpleNamespace
    started: list[str] = []

    def fake_execute(params, out_dir, **kw):
        started.append(out_dir.name)
        if params.get("fail"):
            raise ValueError("this run fails")
        _complete(out_dir)

    monkeypatch.setattr(study, "execute", fake_execute)
    monkeypatch.setattr(study, "find_data", lambda *a: None)

    def run(name, parents=(), fail=False):  # the scheduler needs a name, parents and parameters
        return SimpleNamespace(name=name, parents=parents, params=lambda *a: {"fail": fail})

    # Listed before their parents on purpose: each must wait for both.
    runs = [run(f"C-S384-ainit-s{s}", (f"C-S256-s{s}", f"A-S256-s{s}")) for s in (0, 1)]
    runs += [run("A-S256-s0", fail=True), run("C-S256-s0"), run("A-S256-s1"), run("C-S256-s1")]
    log: list[str] = []
    outcome = run_study("smoke", runs=runs, runs_dir=tmp_path, echo=log.append)
    assert outcome == {"C-S384-ainit-s0": "blocked", "C-S384-ainit-s1": "complete", "A-S256-s0": "failed",
                       "C-S256-s0": "complete", "A-S256-s1": "complete", "C-S256-s1": "complete"}
    assert started.index("C-S384-ainit-s1") > max(started.index("A-S256-s1"), started.index("C-S256-s1"))
    assert "C-S384-ainit-s0" not in started
    assert "C-S384-ainit-s0: blocked (its parent A-S256-s0 did not complete)" in "\n".join(log)


def _fake_execute(monkeypatch, checkpoint: bool = False) -> list[str]:
    """The scheduler alone: execute faked to write a complete metrics.json (and a checkpoint,
    as a run trained here leaves); returns the list of runs in the order they start."""
    import vgg.study as study
    started: list[str] = []

    def fake_execute(params, out_dir, **kw):
        started.append(out_dir.name)
        out_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint:
            (out_dir / "checkpoint.pt").write_bytes(b"")
        _complete(out_dir)

    monkeypatch.setattr(study, "execute", fake_execute)
    monkeypatch.setattr(study, "find_data", lambda *a: None)  # the scheduler alone: no images needed
    return started


def test_the_longest_chain_starts_first_and_unpriced_runs_keep_plan_order(tmp_path, monkeypatch):
    """Critical path first: E's chain (80 + 30 s) before A (10 s), though A is planned first."""
    import vgg.study as study
    started = _fake_execute(monkeypatch)
    runs = _runs(("A", "256", 0), ("B", "256", 0), ("E", "256", 0), ("E", "384", 0, "256"))
    price = {"A-S256-s0": 10.0, "B-S256-s0": 50.0, "E-S256-s0": 80.0, "E-S384-s0": 30.0}
    assert chain_seconds(runs, price) == {"A-S256-s0": 10.0, "B-S256-s0": 50.0,
                                          "E-S256-s0": 110.0, "E-S384-s0": 30.0}
    run_study("smoke", runs=runs, runs_dir=tmp_path / "priced", price=lambda runs: price, echo=lambda *_: None)
    assert started == ["E-S256-s0", "B-S256-s0", "E-S384-s0", "A-S256-s0"]
    # Nothing priced: plan order. E not priced yet while A and B are: E's chain first.
    for name, left, order in (("unpriced", {}, [r.name for r in runs]),
                              ("E unpriced", {**price, "E-S256-s0": math.inf, "E-S384-s0": math.inf},
                               ["E-S256-s0", "E-S384-s0", "B-S256-s0", "A-S256-s0"])):
        started.clear()
        run_study("smoke", runs=runs, runs_dir=tmp_path / name, price=lambda runs: left, echo=lambda *_: None)
        assert started == order, name


def test_a_begun_chain_goes_on_before_a_longer_new_one(tmp_path, monkeypatch):
    """E-S384 (30 s) follows E-S256 before D (100 s) starts: E-S256's checkpoint is here now,
    and may not be after the machine goes."""
    started = _fake_execute(monkeypatch, checkpoint=True)
    runs = _runs(("D", "256", 0), ("E", "256", 0), ("E", "384", 0, "256"))
    price = {"D-S256-s0": 100.0, "E-S256-s0": 80.0, "E-S384-s0": 30.0}
    run_study("smoke", runs=runs, runs_dir=tmp_path, price=lambda runs: price, echo=lambda *_: None)
    assert started == ["E-S256-s0", "E-S384-s0", "D-S256-s0"]


def test_with_a_time_budget_only_chains_that_fit_start(tmp_path, monkeypatch):
    """--hours: E's chain (80 + 30 s) cannot finish in 60 s, so neither E run starts."""
    started = _fake_execute(monkeypatch)
    runs = _runs(("A", "256", 0), ("B", "256", 0), ("E", "256", 0), ("E", "384", 0, "256"))
    price = {"A-S256-s0": 10.0, "B-S256-s0": 50.0, "E-S256-s0": 80.0, "E-S384-s0": 30.0}
    log: list[str] = []
    outcome = run_study("smoke", runs=runs, runs_dir=tmp_path, hours=60 / 3600, price=lambda runs: price,
                        echo=log.append)
    assert started == ["B-S256-s0", "A-S256-s0"]
    assert outcome == {"A-S256-s0": "complete", "B-S256-s0": "complete", "E-S256-s0": "deferred",
                       "E-S384-s0": "deferred"}
    assert "E-S256-s0: deferred (it and the runs that start from it need about 0.0 h" in "\n".join(log)
    assert "2 deferred" in log[-1]
    bad = subprocess.run([sys.executable, "-m", "vgg", "study", "--hours", "0"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "--hours must be > 0, got 0.0" in bad.stderr


def test_study_prices_its_runs_from_their_folders(tmp_path):
    """seconds_left reads the given runs' own history (not the default plan's)."""
    runs = _runs(("A", "256", 7), ("A", "384", 7, "256"))
    folder = tmp_path / "smoke" / "A-S256-s7"
    folder.mkdir(parents=True)
    (folder / "history.csv").write_text("epoch,lr,seconds,holdout_top1_err\n1,0.01,12.0,90\n")
    (folder / "checkpoint.pt").write_bytes(b"")  # resumes at epoch 2
    left = seconds_left(runs, "smoke", tmp_path)
    # A's 12 s epoch prices both; no A evaluation on record yet, so it counts 0
    # (smoke caps: 2 epochs from scratch, 1 fine-tuning)
    assert left == {"A-S256-s7": 12.0, "A-S384-s7": 12.0}
    other = seconds_left(_runs(("E", "256", 7)), "smoke", tmp_path)
    assert other == {"E-S256-s7": math.inf}  # no E epoch on record: cannot be priced
    (folder / "checkpoint.pt").unlink()  # lost (a fresh clone): it trains from epoch 1 again
    assert seconds_left(runs, "smoke", tmp_path)["A-S256-s7"] == 24.0


def test_cli_run_makes_its_own_folder_and_refuses_bad_input(tmp_path):
    data = make_image_folder(tmp_path / "data", n_classes=2, train_per_class=8, val_per_class=2)
    out = tmp_path / "new" / "folder"  # papermill alone fails on a missing folder
    cmd = [sys.executable, "-m", "vgg", "run", "A", "--profile", "smoke", "--out", str(out),
           "-p", f"data={data}", "-p", "epochs=1"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["status"] == "complete"
    assert (out / "run_config.ipynb").exists()
    bad = subprocess.run([sys.executable, "-m", "vgg", "run", "F"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "invalid choice: 'F'" in bad.stderr
    typo = subprocess.run(cmd[:-4] + ["-p", "lerning_rate=0.1"], capture_output=True, text=True, cwd=ROOT)
    assert typo.returncode != 0 and "unknown run parameter(s) 'lerning_rate'" in typo.stderr


def test_status_reads_each_planned_runs_folder_without_running_anything(tmp_path):
    partial = tmp_path / "cpu" / "B-S256-s0"
    partial.mkdir(parents=True)
    (partial / "checkpoint.pt").write_bytes(b"")
    (partial / "history.csv").write_text(
        "epoch,train_loss,train_top1_err,holdout_top1_err,holdout_top5_err,lr,seconds,images_per_s\n"
        "1,2.1,80,70.5,20,0.01,60,150\n2,1.9,70,61.25,15,0.01,60,150\n")
    done = tmp_path / "cpu" / "A-S256-s0"
    done.mkdir()
    _complete(done, eval_seconds=90.0)
    (done / "checkpoint.pt").write_bytes(b"")  # else B-5x5's A-init would need A trained again
    (done / "history.csv").write_text(
        "epoch,train_loss,train_top1_err,holdout_top1_err,holdout_top5_err,lr,seconds,images_per_s\n"
        "1,2.1,80,70.5,20,0.01,30,150\n")
    rows = {r["run"]: r for r in progress("cpu", 1, tmp_path)}
    assert len(rows) == 13 and rows["A-S256-s0"]["state"] == "complete"
    # 43 epochs of the cpu schedule's 45 are left, at the 60 s its two epochs took; its
    # evaluation is priced at A's 90 s, scaled by B's epoch time over A's (60 / 30)
    assert rows["B-S256-s0"] == dict(run="B-S256-s0", state="partial", parents=(), epochs=2, epochs_cap=45, lr=0.01,
                                    holdout_top1_err=61.25, seconds=120.0, seconds_left=43 * 60.0,
                                    eval_seconds=0.0, eval_seconds_left=180.0)
    assert rows["A-S256-s0"]["seconds_left"] == rows["A-S256-s0"]["eval_seconds_left"] == 0.0
    assert rows["A-S256-s0"]["eval_seconds"] == 90.0
    assert rows["C-S256-s0"]["state"] == "missing" and rows["C-S256-s0"]["epochs"] == 0
    assert rows["C-S256-s0"]["seconds_left"] is None  # no C epoch timed yet
    assert rows["C-S384-s0"]["epochs_cap"] == 15  # fine-tuned from C-S256
    # an evaluation at a training scale that no finished run has had cannot be priced
    assert rows["C-S384-s0"]["eval_seconds_left"] is None
    text = format_progress(list(rows.values()), jobs=2)
    assert "1 of 13 complete; 0.0 h of epochs and 0.0 h of evaluation so far" in text and "61.2" in text
    # only B-S256 can be priced: no epoch of A-LRN, B-5x5, C, D or E has been timed; one
    # run cannot be split over two jobs
    assert "left: 0.7 h of epochs + 0.1 h of evaluation = 0.8 h, about 0.8 h with 2 jobs" in text
    assert "plus 11 run(s) that cannot be priced yet (?)" in text
    # another seed's B is priced at seed 0's epochs (45 of them) and A's evaluation
    two = {r["run"]: r for r in progress("cpu", 2, tmp_path)}
    assert two["B-S256-s1"]["seconds_left"] == 45 * 60.0 and two["B-S256-s1"]["eval_seconds_left"] == 180.0
    assert two["A-S256-s1"]["seconds_left"] == 45 * 30.0 and two["A-S256-s1"]["eval_seconds_left"] == 90.0
    cli = subprocess.run([sys.executable, "-m", "vgg", "study", "--status", "--seeds", "1", "--runs-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert cli.returncode == 0 and "B-S256-s0" in cli.stdout and "partial" in cli.stdout


def test_wall_time_waits_for_parents():
    """Three one-hour runs, one the child of another: two jobs take 2 h, not 1.5 h."""
    def row(name, parents=(), state="missing", left=3600.0):
        return dict(run=name, state=state, parents=parents, seconds_left=left, eval_seconds_left=0.0)

    rows = [row("X"), row("Z"), row("Y", ("X",)), row("W", ("Z",), state="complete", left=0.0)]
    assert wall_seconds(rows, jobs=2) == 7200.0 and wall_seconds(rows, jobs=1) == 10800.0
    assert wall_seconds(rows, jobs=3) == 7200.0  # the chain X -> Y is the floor
    t = time_left(rows, jobs=2)
    assert (t["runs"], t["train_s"], t["wall_s"]) == (3, 3 * 3600.0, 7200.0)
    # a parent that is complete (or outside the rows) does not hold its child back
    assert wall_seconds([row("Y", ("W",)), row("W", state="complete", left=0.0)], jobs=2) == 3600.0


def test_a_complete_parent_without_its_checkpoint_is_marked_for_training_again(tmp_path):
    """stale_parents and the status: transitive, only for runs still to run, priced in full."""
    head = "epoch,train_loss,train_top1_err,holdout_top1_err,holdout_top5_err,lr,seconds,images_per_s\n"

    def complete(name, n, epoch_s, eval_s, checkpoint=False):
        f = tmp_path / "cpu" / name
        f.mkdir(parents=True)
        (f / "history.csv").write_text(head + "".join(f"{e},1,50,50,10,0.01,{epoch_s},150\n" for e in range(1, n + 1)))
        _complete(f, eval_seconds=eval_s)
        if checkpoint:
            (f / "checkpoint.pt").write_bytes(b"")

    e = [r for r in plan(1) if r.net == "E"]
    complete("E-S256-s0", 45, 60, 100)
    complete("E-S384-s0", 15, 70, 200)
    assert stale_parents(e, "cpu", tmp_path) == {"E-S384-s0": ["E-S256-512-s0"], "E-S256-s0": ["E-S384-s0"]}
    rows = {r["run"]: r for r in progress("cpu", runs=e, runs_dir=tmp_path)}
    assert rows["E-S384-s0"]["state"] == rows["E-S256-s0"]["state"] == "retrain"
    # all its epochs again (not the 0 its history would leave), and its own evaluation's price
    assert rows["E-S384-s0"]["seconds_left"] == 15 * 70 and rows["E-S384-s0"]["eval_seconds_left"] == 200
    assert rows["E-S256-s0"]["seconds_left"] == 45 * 60 and rows["E-S256-s0"]["eval_seconds_left"] == 100
    (tmp_path / "cpu" / "E-S384-s0" / "checkpoint.pt").write_bytes(b"")  # the child's parent is there
    assert stale_parents(e, "cpu", tmp_path) == {}
    (tmp_path / "cpu" / "E-S384-s0" / "checkpoint.pt").unlink()
    complete("E-S256-512-s0", 15, 70, 300)  # nothing left to run: nothing to train again
    assert stale_parents(e, "cpu", tmp_path) == {}
    assert {r["state"] for r in progress("cpu", runs=e, runs_dir=tmp_path)} == {"complete"}


def test_retire_summarises_the_old_result_once_and_removes_its_files(tmp_path):
    f = tmp_path / "D-S384-s1"
    f.mkdir()
    retire = lambda folder, reason: RunDir(folder).retire(reason)  # noqa: E731
    metrics = dict(run="D-S384-s1", net="D", train_scale="384", seed=1, status="complete", eval_seconds=90.0,
                   train=dict(final_holdout_top1_err=30.7),
                   eval={"dense@384": {"top1_err": 29.4}, "multi-scale": {"top1_err": 28.7}},
                   provenance=dict(git_commit="abc", host="h1", cpu="AMD EPYC"))
    (f / "history.csv").write_text("epoch,seconds\n1,60.5\n2,61.5\n")
    (f / "probs.npz").write_bytes(b"x")
    (f / "weights.pt").write_bytes(b"x")
    (f / "env.json").write_text("{}")
    (f / "dense_context_Q384.json").write_text(json.dumps(dict(q=384, top1_err={"window_in_dense": 45.0})))
    (f / "run_config.ipynb").write_text("{}")
    (f / "metrics.json").write_text(json.dumps(metrics))
    entry = retire(f, reason="test")
    assert {p.name for p in f.iterdir()} == {"superseded.json", "run_config.ipynb"}
    assert entry["epochs"] == 2 and entry["train_seconds"] == 122.0 and entry["eval_seconds"] == 90.0
    assert entry["top1_err"] == {"dense@384": 29.4, "multi-scale": 28.7} and entry["host"] == "h1"
    assert entry["dense_context"] == {384: {"window_in_dense": 45.0}} and entry["reason"] == "test"
    # retired again (a crash before the new training finished restored the old files): one entry
    (f / "history.csv").write_text("epoch,seconds\n1,60.5\n2,61.5\n")
    (f / "metrics.json").write_text(json.dumps(metrics))
    retire(f, reason="test")
    assert len(json.loads((f / "superseded.json").read_text())) == 1
    with pytest.raises(ValueError, match="not a complete run"):
        retire(f, reason="test")


def test_epochs_timed_on_another_cpu_are_priced_at_this_ones_speed(tmp_path):
    head = "epoch,train_loss,train_top1_err,holdout_top1_err,holdout_top5_err,lr,seconds,images_per_s\n"

    def folder(name, epoch_s, n, cpu=None, eval_s=None):
        f = tmp_path / "cpu" / name
        f.mkdir(parents=True)
        (f / "history.csv").write_text(head + "".join(f"{e},1,50,50,10,0.01,{epoch_s},150\n" for e in range(1, n + 1)))
        if cpu is None:
            (f / "checkpoint.pt").write_bytes(b"")  # partial: trained on this machine
        else:
            _complete(f, eval_seconds=eval_s, provenance={"cpu": cpu})
            (f / "checkpoint.pt").write_bytes(b"")

    folder("D-S256-s0", 60, 45, cpu="AMD EPYC", eval_s=120)
    folder("E-S256-s0", 90, 45, cpu="AMD EPYC", eval_s=150)
    folder("D-S256-s1", 40, 5)  # this machine: D epochs take 2/3 of the time they took there
    rows = {r["run"]: r for r in progress("cpu", 3, tmp_path, cpu="Intel Xeon")}
    assert rows["D-S256-s2"]["seconds_left"] == pytest.approx(45 * 40)
    assert rows["D-S256-s1"]["seconds_left"] == pytest.approx(40 * 40)
    assert rows["E-S256-s1"]["seconds_left"] == pytest.approx(45 * 60)  # E not timed here: D's ratio
    assert rows["D-S256-s1"]["eval_seconds_left"] == pytest.approx(80)
    # on the machine that made the records, nothing is scaled
    same = {r["run"]: r for r in progress("cpu", 3, tmp_path, cpu="AMD EPYC")}
    assert same["E-S256-s1"]["seconds_left"] == 45 * 90 and same["D-S256-s1"]["eval_seconds_left"] == 120


def test_status_prices_a_150_crop_evaluation_only_from_its_own_kind(tmp_path):
    head = "epoch,train_loss,train_top1_err,holdout_top1_err,holdout_top5_err,lr,seconds,images_per_s\n"

    def folder(name, epoch_s, n, eval_s=None):
        f = tmp_path / "cpu" / name
        f.mkdir(parents=True)
        (f / "history.csv").write_text(head + "".join(f"{e},1,50,50,10,0.01,{epoch_s},150\n" for e in range(1, n + 1)))
        if eval_s is None:
            (f / "checkpoint.pt").write_bytes(b"")
        else:
            _complete(f, eval_seconds=eval_s)

    folder("D-S256-s0", 60, 45, eval_s=100)
    folder("D-S256-512-s0", 90, 15, eval_s=2000)  # with the 150-crop evaluation
    folder("C-S256-s0", 40, 3)
    rows = {r["run"]: r for r in progress("cpu", 2, tmp_path)}
    # D-S384 has no epoch of its own scale yet: D's epochs at any scale price it
    assert rows["D-S384-s0"]["seconds_left"] == 15 * statistics.median([60] * 45 + [90] * 15)
    assert rows["D-S256-512-s1"]["seconds_left"] == 15 * 90 and rows["D-S256-512-s1"]["eval_seconds_left"] == 2000
    # C's jittered run has no 150-crop evaluation: D's does not price it, and nothing else can
    assert rows["C-S256-512-s0"]["eval_seconds_left"] is None
    # C at S = 256 is priced at D's S = 256 evaluation, scaled by C's epoch time over D's
    assert rows["C-S256-s0"]["eval_seconds_left"] == pytest.approx(100 * 40 / statistics.median([60] * 45 + [90] * 15))
