"""A careless user's inputs and a terminal's signals: refused early, said in one line, nothing lost."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagefolder import make_image_folder
from vgg.config import RunConfig
from vgg.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]

# One bad value per RunConfig field: each is refused when the config is made, before any data.
BAD = {
    "net": "F", "train_scale": "999999", "seed": -3, "profile": "gpux", "epochs": 0, "lr": float("nan"),
    "momentum": 1.5, "weight_decay": -1.0, "batch_size": 0, "patience": -1, "max_lr_drops": -1,
    "holdout_frac": 0.7, "init": "xavier", "init_a": 3, "init_from": 3, "protocols": ["10-crop"],
    "data": 5, "device": "tpu", "threads": 0, "out": 7, "data_path": "gpu", "workers": -1, "compile": "yes",
}


def test_every_field_has_a_bad_value_here():
    assert set(BAD) == set(RunConfig().to_dict())


@pytest.mark.parametrize("field", sorted(BAD))
def test_a_bad_value_of_each_field_is_refused_saying_what_is_valid(field):
    with pytest.raises((ValueError, TypeError), match=field.replace("_", "[_ ]")):  # names the field
        RunConfig.from_dict({field: BAD[field]})


def _vgg(*args, cwd=ROOT, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "vgg", *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, **(env or {})), timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("faults_data"), n_classes=2, train_per_class=8, val_per_class=2)


def test_bad_values_on_the_command_line_are_one_line_before_any_work():
    for args, says in ((["run", "A", "--seed", "-3"], "seed must be a whole number >= 0, got -3"),
                       (["run", "A", "--train-scale", "999999"], "Smin <= Smax <= 1024"),
                       (["study", "--profile", "gpux"], "unknown profile 'gpux'; valid profiles"),
                       (["run", "A", "--profile", "gpux"], "unknown profile 'gpux'; valid profiles"),
                       (["study", "--seeds", "0"], "--seeds must be 1 or more"),
                       (["study", "--seeds", "-2"], "--seeds must be 1 or more")):
        t = time.perf_counter()
        done = _vgg(*args)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) <= 2 and "Traceback" not in done.stderr  # usage + error
        assert time.perf_counter() - t < 30


def test_a_failure_inside_the_notebook_is_one_line_naming_the_run_and_its_notebook(data, tmp_path):
    out = tmp_path / "diverges"
    done = _vgg("run", "A", "--profile", "smoke", "--out", str(out), "-p", f"data={data}", "-p", "lr=9.0")
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "A-S256-lr9-s0 failed: TrainingDiverged: the " in err[0] and "became n" in err[0], done.stderr
    assert f"full traceback in {out / 'run_config.ipynb'}" in err[0] and "Traceback" not in done.stdout
    assert "Kernel is running over TCP" not in done.stdout + done.stderr
    assert RunDir(out).state() == "failed"


def test_paths_are_the_users_and_a_finished_runs_rerun_touches_nothing(data, tmp_path):
    """VGG_DATA and --out relative to the directory the command runs in, not the repository."""
    (tmp_path / "woof").mkdir()
    os.symlink(data, tmp_path / "woof" / "imagewoof")
    done = _vgg("run", "A", "--profile", "smoke", "--out", "mine", "-p", "epochs=1",
                cwd=tmp_path, env={"VGG_DATA": "woof/imagewoof"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"-> {tmp_path / 'mine'}" in done.stdout and "epoch   1" in done.stdout
    assert RunDir(tmp_path / "mine").is_complete() and not (ROOT / "mine").exists()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "mine").iterdir()}
    again = _vgg("run", "A", "--profile", "smoke", "--out", "mine", "-p", "epochs=1",
                 cwd=tmp_path, env={"VGG_DATA": "woof/imagewoof"})
    assert again.returncode == 0 and "complete" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "mine").iterdir()} == before
    missing = _vgg("run", "A", "--profile", "smoke", cwd=tmp_path, env={"VGG_DATA": "woof/nothing"})
    assert missing.returncode == 2 and f"{tmp_path / 'woof' / 'nothing'}" in missing.stderr


def test_a_study_without_data_says_so_before_any_kernel(tmp_path):
    t = time.perf_counter()
    done = _vgg("study", "--profile", "smoke", "--seeds", "1", "--runs-dir", str(tmp_path),
                env={"VGG_DATA": str(tmp_path / "nothing")})
    assert done.returncode == 2 and "no image folder found" in done.stderr
    assert time.perf_counter() - t < 30 and not any(tmp_path.iterdir())


def test_a_folder_that_cannot_be_written_is_named(data, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    done = _vgg("run", "A", "--profile", "smoke", "--out", str(tmp_path / "file" / "run"), "-p", f"data={data}")
    assert done.returncode == 2 and f"cannot write {tmp_path / 'file' / 'run'}" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _tree(pid: int) -> list[int]:
    from vgg.notebook import _descendants
    return _descendants(pid)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for_kernel(pid: int) -> None:
    """Until a papermill kernel runs under ``pid`` (at most 120 s)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        if any("ipykernel" in Path(f"/proc/{p}/cmdline").read_text(errors="replace") for p in _tree(pid)):
            return
        time.sleep(0.2)
    raise AssertionError("no kernel started")


def test_ctrl_c_stops_a_study_and_its_kernels_within_seconds_and_it_resumes(data, tmp_path):
    """SIGINT to the study's process group, as a terminal sends it: the study, its notebooks
    and their kernels (in sessions of their own) are gone within 10 s; the next study resumes."""
    # a terminal's Ctrl-C handler: a shell's background job (nohup make test &) starts with
    # SIGINT ignored, and Python then keeps ignoring it (the study ran on to the end)
    script = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from vgg.spec import Planned, Run; from vgg.study import run_study\n"
              "runs = [Planned(Run('A', '256'), 0, 'smoke'), Planned(Run('A', '384', parent='256'), 0, 'smoke')]\n"
              f"sys.exit(0 if set(run_study('smoke', runs=runs, runs_dir={str(tmp_path)!r}, data={str(data)!r}).values())"
              " <= {'complete', 'skipped'} else 1)\n")
    study = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _wait_for_kernel(study.pid)
    tree = _tree(study.pid)
    os.killpg(study.pid, signal.SIGINT)
    t = time.time()
    out, _ = study.communicate(timeout=30)
    took = time.time() - t
    assert took < 10 and study.returncode != 0, f"{took:.1f} s, exit {study.returncode}:\n{out}"
    time.sleep(0.5)
    assert not [p for p in tree if _alive(p)], out
    assert "study stopped: A-S256-s0 (each resumes from its last checkpoint)" in out
    again = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert RunDir(tmp_path / "smoke" / "A-S384-s0").is_complete()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_kill_of_vgg_run_stops_its_kernel_too(data, tmp_path, sig):
    """SIGTERM (``kill PID``) or SIGINT to ``python -m vgg run`` alone: its papermill and
    kernel, in a session of their own, go with it. They did not: a killed run's kernel
    evaluated on for half an hour, beside the run that replaced it."""
    # SIGINT as a terminal's Ctrl-C meets it: under a background `make test` the child would
    # start with SIGINT ignored, and Python keeps ignoring it (the run went on to the end)
    run = subprocess.Popen([sys.executable, "-m", "vgg", "run", "A", "--profile", "smoke", "--out", str(tmp_path),
                            "-p", f"data={data}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_kernel(run.pid)
    tree = _tree(run.pid)
    run.send_signal(sig)
    out, _ = run.communicate(timeout=30)
    time.sleep(0.5)
    assert run.returncode == 130 and not [p for p in tree if _alive(p)], out
    assert "stopped A-S256-s0; it resumes from its last checkpoint" in out


def test_a_half_written_file_of_a_killed_process_is_cleaned_up_when_the_folder_is_taken(tmp_path):
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "history.csv").write_text("epoch,seconds\n1,2.0\n")
    with RunDir(tmp_path).lock():
        assert not list(tmp_path.glob(".*.tmp")) and (tmp_path / "history.csv").exists()
