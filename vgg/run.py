"""One experiment: train (or resume) one net, evaluate it with its protocols, write its folder.

``book/run_config.ipynb``, the CLI and the tests all call ``run_experiment``. The run's
name, folder and protocols come from ``vgg.spec``; its folder is read and written only
through ``vgg.rundir.RunDir``, which this process owns (a lock) while it works.
"""
from __future__ import annotations

import contextlib
import time

import torch

from . import data as D
from . import datapath
from . import distributed as dist
from .config import RunConfig, resolve
from .evaluate import centre_crop, evaluate_run
from .io import environment
from .model import build, init_paper, param_count
from .profiles import parse_train_scale
from .rundir import RunDir
from .spec import name_of, out_dir, protocols_of
from .train import HISTORY_COLUMNS, TrainingFailed, fit, matmul_peak_flops, pick_device, train_flops_per_image

# The parameters that shape training: a checkpoint or a result made with others is not reused.
RECIPE = ("net", "train_scale", "seed", "profile", "epochs", "lr", "momentum", "weight_decay", "batch_size",
          "patience", "max_lr_drops", "holdout_frac", "init", "init_a", "init_from")


def check_parent(path: str | None, what: str) -> None:
    """Fail before any work when a parent run (init_from / init_a) is not finished with weights."""
    if not path:
        return
    rd = RunDir(resolve(path))
    if not rd.is_complete() or not rd.has_weights():
        why = "is not a complete run" if not rd.is_complete() else "has no weights.pt or checkpoint.pt"
        raise FileNotFoundError(f"{what}={path!r} ({rd.path}) {why}; run it first, e.g. `python -m vgg study`")


def holdout_crops(images: D.Images, idx: torch.Tensor, q: int, crop: int, mean: torch.Tensor):
    """Centre crops of the held-out slice at test scale q (real px): the schedule's monitor."""
    crops = [centre_crop(D.rescale(images.images[i], q), crop) for i in idx.tolist()]
    x = D.normalize(torch.stack(crops), mean) if crops else torch.zeros(0, 3, crop, crop)
    return x, images.labels[idx]


def run_experiment(cfg: RunConfig | dict, progress: bool = True) -> dict:
    """Train and evaluate one run; return its metrics (also in ``<out>/metrics.json``).

    A complete run made with the same recipe is returned as it is, no file touched; protocols
    it lacks are evaluated from its weights (``evaluate_more``). An interrupted run resumes
    from its checkpoint. Under torchrun every rank trains (``vgg.distributed``); rank 0
    alone holds the lock, writes the folder and evaluates while the others wait."""
    cfg = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
    rd, prof, protocols = RunDir(out_dir(cfg)), cfg.prof, protocols_of(cfg)
    if rd.is_complete():
        done = rd.metrics()
        changed = {k: (v, done.get("config", {}).get(k)) for k, v in cfg.to_dict().items()
                   if k in RECIPE and done.get("config", {}).get(k) != v}
        if changed:
            raise ValueError(f"{rd.path} holds a complete run made with other parameters ("
                             + ", ".join(f"{k}: now {a!r}, there {b!r}" for k, (a, b) in changed.items())
                             + "); choose another out, or delete its metrics.json to redo it")
        if dist.rank():
            return done
        return evaluate_more(rd, protocols, progress=progress, device=cfg.device, threads=cfg.threads)
    check_parent(cfg.init_from, "init_from")
    check_parent(cfg.init_a, "init_a")
    rank = dist.rank()
    with contextlib.nullcontext() if rank else rd.lock():
        rank or rd.clear_result()  # a failed attempt's record; this is a new one
        t_start = time.perf_counter()
        device = pick_device(cfg.device, cfg.threads or (dist.local_threads() if dist.world() > 1 else None))
        env = environment()  # the code that trains the run (its commit now, not at the end), on these threads
        if cfg.compile and device.type != "cuda":
            raise ValueError(f"compile=True is for CUDA; this run trains on the {device.type}, where "
                             f"torch.compile measured ~14% slower (vgg.ops.bench)")
        root, train, val, train_idx, holdout_idx, stats, data_path = load_data(cfg, progress, device)

        torch.manual_seed(cfg.seed)
        model = build(cfg.net, num_classes=len(train.classes), width=prof.width, crop=prof.crop)
        init_note = "glorot"
        if cfg.init_from:
            RunDir(resolve(cfg.init_from)).load_into(model)
            init_note = f"weights of {cfg.init_from}"
        elif cfg.init_scheme == "paper":  # Sect. 3.1; net A itself from N(0, 0.01) alone
            a = None
            if cfg.init_a:
                a = build("A", num_classes=len(train.classes), width=prof.width, crop=prof.crop)
                RunDir(resolve(cfg.init_a)).load_into(a)
            copied = init_paper(model, from_a=a, gain_matched=prof.init_gain_matched, rest=prof.init_rest)
            init_note = ("paper: N(0, 0.01)" + (", std matched to the paper's fan-in" if prof.init_gain_matched
                                                 else "") + (" + from A: " + ", ".join(copied) if a else "")
                         + (f"; the other layers {prof.init_rest}" if a and prof.init_rest != "normal" else ""))

        s_lo, s_hi = parse_train_scale(cfg.train_scale)
        holdout = holdout_crops(train, holdout_idx, prof.px((s_lo + s_hi) // 2), prof.crop, stats.mean)
        kw = dict(crop=prof.crop, scale=(prof.px(s_lo), prof.px(s_hi)), batch_size=cfg.batch_size or prof.batch_size,
                  stats=stats, seed=cfg.seed)
        if data_path == "stream":
            workers = cfg.workers if cfg.workers is not None else max(1, dist.local_threads() - 1)
            batches = datapath.StreamBatches(train, train_idx, workers=workers, pin_memory=device.type == "cuda", **kw)
        else:
            batches = D.TrainBatches(datapath.to_device(train, device) if data_path == "device" else train,
                                     train_idx, **kw)
        try:
            result = fit(model, batches, holdout, checkpoint=rd.checkpoint, lr=cfg.lr, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay, max_epochs=cfg.max_epochs,
                         patience=prof.patience if cfg.patience is None else cfg.patience,
                         max_lr_drops=cfg.max_lr_drops, seed=cfg.seed, device=device, progress=progress,
                         recipe=_recipe(cfg), lr_steps=cfg.lr_steps, stall_epochs=prof.stall_epochs,
                         monitor_window=prof.monitor_window, plateau_threshold=prof.plateau_threshold, compile=cfg.compile,
                         on_epoch_end=lambda epoch, history: rd.write_history(history, HISTORY_COLUMNS))
        except TrainingFailed as err:
            rank or rd.finish(dict(_identity(cfg), status="failed", error=str(err), config=cfg.to_dict()))
            raise
        del batches, train  # the device path's copy of the images frees the GPU for evaluation
        rank or rd.write_history(result.history, HISTORY_COLUMNS)
        t_eval = time.perf_counter()  # under torchrun each rank evaluates its shard of val; the folder is rank 0's
        evals, probs = evaluate_run(model, val, stats.mean, train_scale=cfg.train_scale, profile=prof,
                                    protocols=protocols, device=str(device), progress=progress and not rank,
                                    shards=dist.Shards(len(val)) if dist.world() > 1 else None)
        if rank:
            dist.barrier()
            return rd.metrics()
        rd.write_probs(val.ids, val.labels.numpy(), val.classes, probs)
        rd.save_weights(model)
        peak = matmul_peak_flops(device)
        speeds = sorted(r["images_per_s"] for r in result.history)
        img_s = speeds[len(speeds) // 2] if speeds else 0.0
        env.update(wall_seconds=time.perf_counter() - t_start, matmul_peak_flops=peak)
        rd.write_env(env)
        hist = result.history
        rd.finish(dict(
            _identity(cfg), status="complete", config=cfg.to_dict(),
            model=dict(net=cfg.net, width=prof.width, crop=prof.crop, num_classes=len(val.classes),
                       params=param_count(model), init=init_note),
            data=dict(root=str(root), path=data_path, n_train=len(train_idx), n_holdout=len(holdout_idx), n_val=len(val),
                      classes=val.classes, mean_rgb=[round(float(v), 3) for v in stats.mean]),
            train=dict(world_size=dist.world(), epochs=result.epochs, stopped=result.stopped, lr_drops=result.lr_drops,
                       seconds=round(sum(r["seconds"] for r in hist), 1), images_per_s=round(img_s, 1),
                       best_holdout_top1_err=min((r["holdout_top1_err"] for r in hist), default=None),
                       final_holdout_top1_err=hist[-1]["holdout_top1_err"] if hist else None,
                       mfu=round(min(img_s * train_flops_per_image(model) / (peak * dist.world()), 1.0), 3)),
            eval=evals, eval_seconds=round(time.perf_counter() - t_eval, 1), eval_version=2, provenance=env))
    dist.barrier()
    return rd.metrics()


STATS_SAMPLE = 10_000  # the stream path's colour statistics: an even sample of this many images


def load_data(cfg: RunConfig, progress: bool, device: torch.device = torch.device("cpu")):
    """(root, train, val, train indices, held-out indices, colour stats, data path) of a run.
    The training images are decoded into the cache, or left to stream (vgg.datapath.choose);
    val is always cached (50,000 images at shortest side 512: ~50 GB on disk, memory-mapped)."""
    prof = cfg.prof
    root = D.find_data(resolve(cfg.data), prof.data_folder)
    kw = dict(per_class=prof.per_class, cache_side=prof.cache_side)
    lazy = datapath.stream_split(root, "train", **kw)
    path = datapath.choose(cfg.data_path, datapath.decoded_bytes(lazy) if cfg.data_path == "auto" else 0, device)
    train = lazy if path == "stream" else D.load_split(root, "train", progress=progress, **kw)
    val = D.load_split(root, "val", classes=train.classes, progress=progress, **kw)
    train_idx, holdout_idx = D.holdout_split(train.labels, cfg.holdout_frac, seed=0)  # fixed for all seeds
    # deviation: streamed, the colour statistics come from an even sample of the training images
    sample = train_idx if path != "stream" or len(train_idx) <= STATS_SAMPLE else \
        train_idx[torch.linspace(0, len(train_idx) - 1, STATS_SAMPLE).long()]
    return root, train, val, train_idx, holdout_idx, D.colour_stats(train.subset(sample)), path


def evaluate_more(rd: RunDir, protocols, *, progress: bool = True, device: str = "auto",
                  threads: int | None = None) -> dict:
    """Add to a finished run the results of ``protocols`` it does not have, from its weights;
    a run that has them all is returned as it is, no file touched. The new records are
    merged into ``eval`` (the old ones stay as they are) and their outputs into probs.npz,
    which is written before metrics.json."""
    m = rd.metrics()
    cfg = RunConfig.from_dict(dict(m["config"], device=device, threads=threads, out=str(rd.path)))
    from_protocol = {k: v.get("protocol", k.split("@")[0]) for k, v in rd.results().items()}
    todo = [p for p in protocols if p not in from_protocol.values()]
    if not todo:
        return m
    with rd.lock():
        model = build(cfg.net, num_classes=m["model"]["num_classes"], width=cfg.prof.width, crop=cfg.prof.crop)
        rd.load_into(model)  # before the data: a mismatch fails in a second
        _, _, val, _, _, stats, _ = load_data(cfg, progress)
        t = time.perf_counter()
        evals, probs = evaluate_run(model, val, stats.mean, train_scale=cfg.train_scale, profile=cfg.prof,
                                    protocols=todo, device=str(pick_device(device, threads)), progress=progress)
        old = rd.probs()
        rd.write_probs(val.ids, val.labels.numpy(), val.classes, {**(old["probs"] if old else {}), **probs})
        m["eval"] = {**m["eval"], **evals}
        m["eval_seconds"] = round(float(m.get("eval_seconds") or 0.0) + time.perf_counter() - t, 1)
        m.setdefault("evaluated_later", []).append(dict(protocols=todo, when=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                        provenance=environment()))
        rd.finish(m)
    return m


def _recipe(cfg: RunConfig) -> dict:
    """What shapes training, with the profile's defaults filled in: a checkpoint made under
    other values (a changed profile included) is not resumed."""
    r = {k: v for k, v in cfg.to_dict().items() if k in RECIPE and k != "epochs"}
    r.update(patience=cfg.prof.patience if cfg.patience is None else cfg.patience,
             batch_size=cfg.batch_size or cfg.prof.batch_size,
             lr_steps=list(cfg.lr_steps) if cfg.lr_steps else None,
             **({"monitor": [cfg.prof.monitor_window, cfg.prof.plateau_threshold]} if cfg.prof.monitor_window > 1 else {}))
    return r


def _identity(cfg: RunConfig) -> dict:
    return dict(run=name_of(cfg), net=cfg.net, train_scale=cfg.train_scale, seed=cfg.seed, profile=cfg.profile)


__all__ = ["run_experiment", "evaluate_more", "load_data", "check_parent", "RECIPE"]
