"""One experiment: train (or resume) one net, evaluate every protocol it feeds, write
the run folder. The notebook ``book/run_config.ipynb``, the CLI and the tests all call
``run_experiment``; nothing here is specific to any of them.

The run folder (DESIGN.md): metrics.json (written last, so a folder with a complete
metrics.json is a finished run), history.csv, probs.npz, env.json, checkpoint.pt (never
in git), and the executed notebook when run through papermill.
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import torch

from . import data as D
from .config import RunConfig, resolve
from .evaluate import EVAL_VERSION, centre_crop, evaluate_run, save_probs
from .io import environment, git_commit, write_json, write_text
from .model import build, init_paper, param_count
from .profiles import parse_train_scale
from .train import CHECKPOINT, HISTORY_COLUMNS, TrainingFailed, fit, load_weights, matmul_peak_flops, pick_device, \
    train_flops_per_image


# The parameters that shape training: a checkpoint made with others is not resumed.
RECIPE = ("net", "train_scale", "seed", "profile", "epochs", "lr", "momentum", "weight_decay", "batch_size",
          "patience", "max_lr_drops", "holdout_frac", "init", "init_a", "init_from")


def read_metrics(out_dir: str | Path) -> dict | None:
    """The run's metrics.json, or None when there is none."""
    path = Path(out_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def is_complete(out_dir: str | Path) -> bool:
    try:
        m = read_metrics(out_dir)
    except (OSError, ValueError):
        return False
    return bool(m) and m.get("status") == "complete"


def check_parent(path: str | None, what: str) -> None:
    """Fail before any work when a parent run (init_from / init_a) is not finished."""
    if path and not is_complete(resolve(path)):
        raise FileNotFoundError(f"{what}={path!r} is not a complete run (no metrics.json with status "
                                f"'complete'); run it first, e.g. `python -m vgg study`")


def holdout_crops(images: D.Images, idx: torch.Tensor, q: int, crop: int, mean: torch.Tensor):
    """Centre crops of the held-out slice at test scale q (real px): the schedule's monitor."""
    crops = [centre_crop(D.rescale(images.images[i], q), crop) for i in idx.tolist()]
    x = D.normalize(torch.stack(crops), mean) if crops else torch.zeros(0, 3, crop, crop)
    return x, images.labels[idx]


def run_experiment(cfg: RunConfig | dict, progress: bool = True) -> dict:
    """Train and evaluate one run; return its metrics (also in ``<out>/metrics.json``).

    A complete run is returned as it is; an interrupted one resumes from its checkpoint.
    """
    cfg = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
    out, prof = cfg.out_dir, cfg.prof
    if is_complete(out):
        done = read_metrics(out)
        changed = {k: (v, done.get("config", {}).get(k)) for k, v in cfg.to_dict().items()
                   if k in RECIPE + ("multi_crop",) and done.get("config", {}).get(k) != v}
        if changed:
            raise ValueError(f"{out} holds a complete run made with other parameters ("
                             + ", ".join(f"{k}: now {a!r}, there {b!r}" for k, (a, b) in changed.items())
                             + "); choose another out, or delete its metrics.json to redo it")
        return done
    check_parent(cfg.init_from, "init_from")
    check_parent(cfg.init_a, "init_a")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").unlink(missing_ok=True)  # a failed attempt's record; this is a new one
    t_start = time.perf_counter()
    device = pick_device(cfg.device, cfg.threads)

    root, train, val, train_idx, holdout_idx, stats = _load_data(cfg, progress)

    torch.manual_seed(cfg.seed)
    model = build(cfg.net, num_classes=len(train.classes), width=prof.width, crop=prof.crop)
    init_note = "glorot"
    if cfg.init_from:
        load_weights(resolve(cfg.init_from), model)
        init_note = f"weights of {cfg.init_from}"
    elif cfg.init == "paper":
        a = build("A", num_classes=len(train.classes), width=prof.width, crop=prof.crop)
        load_weights(resolve(cfg.init_a), a)
        init_note = "paper: N(0, 0.01) + from A: " + ", ".join(init_paper(model, from_a=a))

    s_lo, s_hi = parse_train_scale(cfg.train_scale)
    batches = D.TrainBatches(train, train_idx, crop=prof.crop, scale=(prof.px(s_lo), prof.px(s_hi)),
                             batch_size=cfg.batch_size or prof.batch_size, stats=stats, seed=cfg.seed)
    holdout = holdout_crops(train, holdout_idx, prof.px((s_lo + s_hi) // 2), prof.crop, stats.mean)
    try:
        result = fit(model, batches, holdout, out_dir=out, lr=cfg.lr, momentum=cfg.momentum,
                     weight_decay=cfg.weight_decay, max_epochs=cfg.max_epochs,
                     patience=prof.patience if cfg.patience is None else cfg.patience,
                     max_lr_drops=cfg.max_lr_drops, seed=cfg.seed, device=device, progress=progress,
                     recipe=_recipe(cfg), lr_steps=cfg.lr_steps, stall_epochs=prof.stall_epochs,
                     on_epoch_end=lambda epoch, history: write_text(out / "history.csv", _csv(history)))
    except TrainingFailed as err:
        write_json(out / "metrics.json", dict(_identity(cfg), status="failed", error=str(err),
                                              config=cfg.to_dict()))
        raise
    write_text(out / "history.csv", _csv(result.history))

    evals, eval_seconds = _evaluate(model, val, stats, cfg, device, out, progress)

    env = environment()
    peak = matmul_peak_flops(device)
    speeds = sorted(r["images_per_s"] for r in result.history)
    img_s = speeds[len(speeds) // 2] if speeds else 0.0
    env.update(wall_seconds=time.perf_counter() - t_start, matmul_peak_flops=peak)
    write_json(out / "env.json", env)
    metrics = dict(
        _identity(cfg), status="complete", config=cfg.to_dict(),
        model=dict(net=cfg.net, width=prof.width, crop=prof.crop, num_classes=len(train.classes),
                   params=param_count(model), init=init_note),
        data=dict(root=str(root), n_train=len(train_idx), n_holdout=len(holdout_idx), n_val=len(val),
                  classes=train.classes, mean_rgb=[round(float(v), 3) for v in stats.mean]),
        train=dict(epochs=result.epochs, stopped=result.stopped, lr_drops=result.lr_drops,
                   seconds=round(sum(r["seconds"] for r in result.history), 1), images_per_s=round(img_s, 1),
                   best_holdout_top1_err=min((r["holdout_top1_err"] for r in result.history), default=None),
                   final_holdout_top1_err=result.history[-1]["holdout_top1_err"] if result.history else None,
                   mfu=round(img_s * train_flops_per_image(model) / peak, 3)),
        eval=evals, eval_seconds=eval_seconds, eval_version=EVAL_VERSION, provenance=env)
    write_json(out / "metrics.json", metrics)  # last: its presence marks the run finished
    return metrics


def _load_data(cfg: RunConfig, progress: bool):
    """(root, train, val, train indices, held-out indices, colour stats) of a run."""
    prof = cfg.prof
    root = D.find_data(resolve(cfg.data))
    train = D.load_split(root, "train", per_class=prof.per_class, cache_side=prof.cache_side, progress=progress)
    val = D.load_split(root, "val", classes=train.classes, per_class=prof.per_class,
                       cache_side=prof.cache_side, progress=progress)
    train_idx, holdout_idx = D.holdout_split(train.labels, cfg.holdout_frac, seed=0)  # fixed for all seeds
    return root, train, val, train_idx, holdout_idx, D.colour_stats(train.subset(train_idx))


def _evaluate(model, val, stats, cfg: RunConfig, device, out: Path, progress: bool) -> tuple[dict, float]:
    """Every protocol of the run (vgg.evaluate.evaluate_run); writes probs.npz."""
    t_eval = time.perf_counter()
    evals, probs = evaluate_run(model, val, stats.mean, train_scale=cfg.train_scale, profile=cfg.prof,
                                multi_crop=cfg.multi_crop, device=str(device), progress=progress)
    save_probs(out / "probs.npz", val.ids, val.labels.numpy(), val.classes, probs)
    return evals, round(time.perf_counter() - t_eval, 1)


def needs_reevaluation(out_dir: str | Path) -> bool:
    """A complete run evaluated under an older protocol (``EVAL_VERSION``)."""
    m = read_metrics(out_dir)
    return bool(m) and m.get("status") == "complete" and m.get("eval_version", 1) < EVAL_VERSION


def reevaluate(out_dir: str | Path, progress: bool = True) -> dict:
    """Evaluate a finished run again under this code's protocols, from its checkpoint.

    Replaces ``eval``, ``eval_seconds`` and probs.npz and sets ``eval_version``; appends
    what was done (old version, commit, time, the old top-1 errors) to ``reevaluated``.
    Training and its record are untouched. probs.npz is written before metrics.json, so a
    crash in between leaves a run that still says it needs re-evaluation. Returns the new
    metrics."""
    out = Path(out_dir)
    m = read_metrics(out)
    if not m or m.get("status") != "complete":
        raise ValueError(f"{out} is not a complete run (no metrics.json with status 'complete'); "
                         f"only finished runs can be re-evaluated")
    if not (out / CHECKPOINT).exists():
        raise FileNotFoundError(f"{out} has no {CHECKPOINT}: checkpoints are not in git, so a run can be "
                                f"re-evaluated only where it was trained, or after training it again")
    cfg = RunConfig.from_dict(m["config"])
    model = build(cfg.net, num_classes=m["model"]["num_classes"], width=cfg.prof.width, crop=cfg.prof.crop)
    load_weights(out, model)  # before the data: a mismatch fails in a second, not after loading
    _, _, val, _, _, stats = _load_data(cfg, progress)
    device = pick_device(cfg.device, cfg.threads)
    evals, eval_seconds = _evaluate(model, val, stats, cfg, device, out, progress)
    before = {k: v["top1_err"] for k, v in m["eval"].items()}
    entry = dict(from_version=m.get("eval_version", 1), to_version=EVAL_VERSION, commit=git_commit(),
                 when=time.strftime("%Y-%m-%dT%H:%M:%S%z"), eval_seconds=eval_seconds, top1_err_before=before)
    m.update(eval=evals, eval_seconds=eval_seconds, eval_version=EVAL_VERSION)
    m.setdefault("reevaluated", []).append(entry)
    write_json(out / "metrics.json", m)
    return m


SUPERSEDED = "superseded.json"


def retire(out_dir: str | Path, reason: str) -> dict:
    """Set a complete run's result aside before it is trained again, so the folder holds one
    training at a time: a summary of the old result (commit, host, epochs, seconds, every
    error it reported) is appended to ``superseded.json``, then its metrics.json (first, so
    the folder never reads as a complete run without its files), history.csv, probs.npz,
    env.json and dense-context records are removed (git keeps them). The
    study does this when a run still to run starts from the weights of a complete run whose
    checkpoint is gone (checkpoints are not in git). Returns the summary."""
    out = Path(out_dir)
    m = read_metrics(out)
    if not m or m.get("status") != "complete":
        raise ValueError(f"{out} is not a complete run (no metrics.json with status 'complete'); nothing to retire")
    prov = m.get("provenance", {})
    hist = out / "history.csv"
    rows = list(csv.DictReader(io.StringIO(hist.read_text()))) if hist.exists() else []
    contexts = sorted(out.glob("dense_context_Q*.json"))
    entry = dict(run=m["run"], reason=reason, retired=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 git_commit=prov.get("git_commit"), host=prov.get("host"), cpu=prov.get("cpu"),
                 epochs=len(rows), train_seconds=round(sum(float(r["seconds"]) for r in rows), 1),
                 eval_seconds=m.get("eval_seconds"), reevaluated=len(m.get("reevaluated", [])),
                 final_holdout_top1_err=m.get("train", {}).get("final_holdout_top1_err"),
                 top1_err={k: v.get("top1_err") for k, v in m.get("eval", {}).items()},
                 dense_context={r["q"]: r["top1_err"] for r in (json.loads(f.read_text()) for f in contexts)})
    path = out / SUPERSEDED
    earlier = json.loads(path.read_text()) if path.exists() else []
    key = ("git_commit", "host", "train_seconds", "eval_seconds")
    if not any(all(e.get(k) == entry[k] for k in key) for e in earlier):  # once per training
        write_json(path, earlier + [entry])
    (out / "metrics.json").unlink()  # first: from here on the folder reads as unfinished
    for f in contexts + [out / "probs.npz", out / "env.json", hist]:
        f.unlink(missing_ok=True)
    return entry


def dense_context_file(q: int) -> str:
    return f"dense_context_Q{q}.json"


def measure_dense_context(out_dir: str | Path, q: int | None = None, every: int = 1,
                          progress: bool = True) -> dict:
    """``vgg.evaluate.dense_context`` for a finished run, from its checkpoint, at test scale
    ``q`` (paper pixels; default the run's single test scale, Q = S or 384 for jittered S)
    on every ``every``-th validation image. Writes ``dense_context_Q<q>.json`` into the run
    folder (with the commit, the time, the seconds it took and the environment) and returns
    it; the run's own record is untouched."""
    from .evaluate import dense_context
    from .profiles import test_scales

    out = Path(out_dir)
    m = read_metrics(out)
    if not m or m.get("status") != "complete":
        raise ValueError(f"{out} is not a complete run (no metrics.json with status 'complete')")
    if not (out / CHECKPOINT).exists():
        raise FileNotFoundError(f"{out} has no {CHECKPOINT}: checkpoints are not in git, so this can be "
                                f"measured only where the run was trained")
    if every < 1:
        raise ValueError(f"every must be >= 1 (every n-th validation image), got {every}")
    cfg = RunConfig.from_dict(m["config"])
    q = q or test_scales(cfg.train_scale)["single"][0]
    if cfg.prof.px(q) < cfg.prof.crop:  # before the data: say so in a second
        raise ValueError(f"test scale Q={q} is {cfg.prof.px(q)} px in the {cfg.profile} profile, smaller than "
                         f"its {cfg.prof.crop} px crop; use Q >= 224 (paper pixels)")
    model = build(cfg.net, num_classes=m["model"]["num_classes"], width=cfg.prof.width, crop=cfg.prof.crop)
    load_weights(out, model)  # before the data: a mismatch fails in a second
    _, _, val, _, _, stats = _load_data(cfg, progress)
    if every > 1:
        val = val.subset(torch.arange(0, len(val), every))
    t0 = time.perf_counter()
    result = dense_context(model, val, cfg.prof.px(q), stats.mean,
                           device=pick_device(cfg.device, cfg.threads), progress=progress)
    record = dict(run=m["run"], net=cfg.net, train_scale=cfg.train_scale, seed=cfg.seed, q=q,
                  q_px=cfg.prof.px(q), every=every, top1_err=result, commit=git_commit(),
                  when=time.strftime("%Y-%m-%dT%H:%M:%S%z"), seconds=round(time.perf_counter() - t0, 1),
                  provenance=environment())
    write_json(out / dense_context_file(q), record)
    return record


def _recipe(cfg: RunConfig) -> dict:
    """What shapes training, with the profile's defaults filled in: a checkpoint made under
    other values (a changed profile included) is not resumed."""
    r = {k: v for k, v in cfg.to_dict().items() if k in RECIPE and k != "epochs"}
    r.update(patience=cfg.prof.patience if cfg.patience is None else cfg.patience,
             batch_size=cfg.batch_size or cfg.prof.batch_size,
             lr_steps=list(cfg.lr_steps) if cfg.lr_steps else None)
    return r


def _identity(cfg: RunConfig) -> dict:
    return dict(run=cfg.name, net=cfg.net, train_scale=cfg.train_scale, seed=cfg.seed, profile=cfg.profile)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()
