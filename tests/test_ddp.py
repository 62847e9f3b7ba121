"""torchrun (issue 21): two CPU ranks train one run in DistributedDataParallel (gloo); rank 0
alone writes the folder; without dropout the result is one process's up to float rounding."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imagefolder import make_image_folder
from vgg import data as D
from vgg.evaluate import BASE, evaluate_run
from vgg.rundir import RunDir
from vgg.model import build
from vgg.profiles import PROFILES
from vgg.config import RunConfig
from vgg.run import holdout_crops, load_data
from vgg.train import fit

SMOKE = PROFILES["smoke"]
TESTS = Path(__file__).resolve().parent

# Runs `python -m vgg run ...` (argv[2:]) with every write to the run folder logged per rank.
LOGGED_RUN = r"""
import os, sys
from vgg import rundir, train
from vgg.ops import cli
log = open(os.path.join(sys.argv[1], f"writes-{os.environ['RANK']}.txt"), "w", buffering=1)
def logged(name, f):
    def wrapper(*a, **k):
        log.write(name + "\n")
        return f(*a, **k)
    return wrapper
for name in ("lock", "clear_result", "write_history", "write_probs", "save_weights", "write_env", "finish", "retire"):
    setattr(rundir.RunDir, name, logged(name, getattr(rundir.RunDir, name)))
train._save_checkpoint = logged("checkpoint", train._save_checkpoint)
sys.exit(cli.main(sys.argv[2:]))
"""

# fit_without_dropout on every rank; rank 0 saves what it returns to argv[3].
DDP_FIT = r"""
import sys, torch
sys.path.insert(0, sys.argv[4])
from vgg import distributed as dist
from test_ddp import fit_without_dropout
dist.init("cpu")
out = fit_without_dropout(sys.argv[1], sys.argv[2])
if dist.rank() == 0:
    torch.save(out, sys.argv[3])
dist.finish()
"""


def torchrun(tmp_path, script: str, *args) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(script)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(path),
           *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory):
    """3 classes x 24 train images: 9 batches of 8 per epoch."""
    return make_image_folder(tmp_path_factory.mktemp("ddp_data"), n_classes=3, train_per_class=24,
                             val_per_class=4, seed=1)


def fit_without_dropout(data, out) -> dict:
    """Two epochs of net A at the smoke profile with dropout off: the only randomness left is
    the data's, which comes from (seed, epoch) and is the same in every rank."""
    torch.set_num_threads(1)
    imgs = D.load_split(data, "train", progress=False)
    stats = D.colour_stats(imgs)
    torch.manual_seed(0)
    model = build("A", num_classes=3, width=SMOKE.width, crop=SMOKE.crop)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    x, y = holdout_crops(imgs, torch.arange(0, len(imgs), 4), SMOKE.px(256), SMOKE.crop, stats.mean)
    batches = D.TrainBatches(imgs, None, crop=SMOKE.crop, scale=(SMOKE.px(256), SMOKE.px(512)), batch_size=8,
                             stats=stats, seed=0)
    result = fit(model, batches, (x, y), checkpoint=Path(out) / "checkpoint.pt", lr=0.001, momentum=0.9,
                 weight_decay=5e-4, max_epochs=2, patience=1, max_lr_drops=3, seed=0,
                 device=torch.device("cpu"), progress=False)
    return dict(history=result.history, weights=model.state_dict())


def test_two_ranks_without_dropout_match_one_process(ddp_data, tmp_path):
    (tmp_path / "ddp").mkdir()
    torchrun(tmp_path, DDP_FIT, ddp_data, tmp_path / "ddp", tmp_path / "ddp.pt", TESTS)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=False)
    one = fit_without_dropout(ddp_data, tmp_path)
    for a, b in zip(ddp["history"], one["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)  # measured: 5e-8
        assert abs(a["train_top1_err"] - b["train_top1_err"]) <= 100 / 72 + 1e-9  # one image at most
    for k, w in one["weights"].items():
        torch.testing.assert_close(ddp["weights"][k], w, rtol=1e-5, atol=1e-6)  # measured: 1.5e-8


def test_torchrun_trains_one_run_and_rank0_alone_writes(ddp_data, tmp_path):
    out = tmp_path / "run"
    done = torchrun(tmp_path, LOGGED_RUN, tmp_path, "run", "A", "--profile", "smoke", "--out", out,
                    "-p", f"data={ddp_data}")
    assert "on 2 ranks" in done.stdout and "complete" in done.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "complete" and m["train"]["world_size"] == 2 and m["train"]["epochs"] == 2
    assert not (out / "run_config.ipynb").exists()  # no notebook under torchrun
    rank0 = (tmp_path / "writes-0.txt").read_text().split()
    assert {"lock", "checkpoint", "write_history", "save_weights", "finish"} <= set(rank0)
    assert (tmp_path / "writes-1.txt").read_text() == ""
    # the evaluation was sharded (each rank its half of val, gathered): one process evaluating
    # the same weights finds the same errors and, up to float16 storage, the same outputs
    rd = RunDir(out)
    model = build("A", num_classes=3, width=SMOKE.width, crop=SMOKE.crop)
    model.load_state_dict(rd.weights())
    _, _, val, _, _, stats, _ = load_data(RunConfig.from_dict(m["config"]), progress=False)
    torch.set_num_threads(1)
    records, probs = evaluate_run(model, val, stats.mean, train_scale="256", profile=SMOKE,
                                  protocols=list(m["config"]["protocols"] or BASE), progress=False)
    saved = rd.probs()
    assert saved["ids"] == list(val.ids) and set(records) == set(m["eval"])
    for key, rec in records.items():
        assert rec["top1_err"] == m["eval"][key]["top1_err"] and rec["n_images"] == m["eval"][key]["n_images"] == 12
        np.testing.assert_allclose(saved["probs"][key], probs[key], atol=1e-3)  # float16: 5e-4 at 1


def test_the_ranks_slices_make_one_processes_batch(ddp_data):
    imgs = D.load_split(ddp_data, "train", progress=False)
    make = lambda: D.TrainBatches(imgs, None, crop=SMOKE.crop, scale=(SMOKE.px(256), SMOKE.px(512)),
                                  batch_size=8, stats=D.colour_stats(imgs), seed=3, prefetch=False)
    one, ranks = make(), [make(), make()]
    for r, tb in enumerate(ranks):
        tb.rank, tb.world = r, 2
    n = 0
    for (x, y), *parts in zip(one.epoch(2), *(tb.epoch(2) for tb in ranks)):
        assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)
        n += 1
    assert n == len(one) > 0
