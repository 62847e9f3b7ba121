"""Training with the paper's recipe (Sect. 3.1): resumable, deterministic, observable.

Soft-max cross-entropy, SGD with momentum 0.9 and weight decay 5e-4, dropout 0.5 on FC1
and FC2 (in the model), learning rate 1e-2 divided by 10 whenever the monitored accuracy
stops improving; after the third division the next plateau stops training.

deviation: the paper monitored the validation set; we monitor a fixed held-out slice of
the training set (``holdout_frac`` of each class) so the val set only ever reports.

A checkpoint is written atomically at the end of every epoch. Every epoch's randomness
(augmentation and dropout) is seeded from (seed, epoch), so a run interrupted and resumed
ends with exactly the weights of one never interrupted (on CPU).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import distributed as dist
from .io import atomic_path
from .model import describe

HISTORY_COLUMNS = ["epoch", "train_loss", "train_top1_err", "holdout_top1_err", "holdout_top5_err",
                   "lr", "seconds", "images_per_s"]


class TrainingFailed(RuntimeError):
    """Training cannot produce a result: the run is failed, not finished."""


class TrainingDiverged(TrainingFailed):
    """The loss became NaN or infinite."""


class TrainingStalled(TrainingFailed):
    """The training error is still at chance after ``stall_epochs`` epochs: a dead net."""


def is_stalled(history: list[dict], num_classes: int, stall_epochs: int | None) -> bool:
    """True when epoch ``stall_epochs`` has just ended with the training error within one
    point of chance (100 * (1 - 1/classes)).

    Why: a net whose ReLUs all die in its first steps predicts one class for good (Glorot
    B-5x5 at the cpu scale: loss ln 10, 90% error, for 45 epochs; runs/cpu-pilot). Sect. 3.1
    met the same problem in deep nets and answered it with its A-init. Learning nets are far
    below chance by epoch 3 (every cpu run so far: 60-77% of 90%), so the check is cheap
    insurance that a dead run fails in minutes, not hours."""
    if not stall_epochs or len(history) != stall_epochs:
        return False
    return history[-1]["train_top1_err"] >= 100.0 * (1 - 1 / num_classes) - 1.0


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    stopped: str = ""  # "plateau" (the paper's stop), "epoch cap", or "schedule end" (fixed schedule)
    lr_drops: int = 0

    @property
    def epochs(self) -> int:
        return len(self.history)


def pick_device(device: str = "auto", threads: int | None = None) -> torch.device:
    """CUDA when asked for or present; otherwise the CPU with an explicit thread count."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' but no CUDA device is available; use device='cpu' or 'auto'")
        return torch.device("cuda")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return torch.device("cpu")


def epoch_seed(seed: int, epoch: int) -> int:
    """One seed per (run seed, epoch): the same epoch draws the same numbers on resume."""
    return (seed * 1_000_003 + epoch * 7919) % (2 ** 63)


@torch.inference_mode()
def topk_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                device: torch.device) -> tuple[float, float]:
    """Top-1 and top-5 error (percent) of ``model`` on prepared crops ``x``."""
    was_training = model.training
    model.eval()
    top1 = top5 = 0
    k = min(5, _num_classes(model))
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, memory_format=torch.channels_last)
        with _autocast(device):
            scores = model(xb).float()
        if not bool(torch.isfinite(scores).all()):
            raise TrainingDiverged("the net's outputs on the held-out slice became non-finite; the run is "
                                   "marked failed. A lower lr may help.")
        pred = scores.topk(k, dim=1).indices.cpu()
        yb = y[i:i + batch_size]
        top1 += int((pred[:, 0] == yb).sum())
        top5 += int((pred == yb[:, None]).any(dim=1).sum())
    model.train(was_training)
    n = max(len(x), 1)
    return 100.0 * (1 - top1 / n), 100.0 * (1 - top5 / n)


def _num_classes(model: nn.Module) -> int:
    return model.classifier[-1].out_features


def _autocast(device: torch.device):
    # bf16 autocast on CUDA only: on this CPU bf16 is ~12x slower than fp32.
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def fit(model: nn.Module, batches, holdout: tuple[torch.Tensor, torch.Tensor], *, checkpoint: Path,
        lr: float, momentum: float, weight_decay: float, max_epochs: int, patience: int,
        max_lr_drops: int, seed: int, device: torch.device, progress: bool = True,
        recipe: dict | None = None, lr_steps: tuple[int, ...] | None = None,
        stall_epochs: int | None = None, monitor_window: int = 1, plateau_threshold: float | None = None,
        on_epoch_end: Callable[[int, list[dict]], None] | None = None, compile: bool = False) -> TrainResult:
    """Train ``model`` on ``batches`` (a ``vgg.data.TrainBatches``) until the schedule stops
    or ``max_epochs``; resume from ``checkpoint`` when it exists (written after every epoch).

    The schedule: the paper's plateau rule (lr / 10 after ``patience`` epochs without a new
    best held-out accuracy; the plateau after ``max_lr_drops`` divisions stops), or, with
    ``lr_steps``, lr / 10 after each of those epochs and ``max_epochs`` epochs in all
    (stopped = "schedule end").

    ``holdout`` is (x, y): prepared, normalised crops of the held-out slice, the monitor.
    ``recipe``: the run parameters that shape training; it is stored in the checkpoint, and a
    resume with other values is refused (the optimiser's saved state would silently win).
    ``stall_epochs``: raise ``TrainingStalled`` when the training error is still at chance
    after that many epochs (``is_stalled``); None never checks.
    Bit-exact resume holds for the same device and torch thread count: CPU kernels may sum
    in another order with another number of threads.
    Under torchrun (``vgg.distributed``) each rank trains its slice of every global batch in
    DistributedDataParallel; the history's sums cover all ranks; only rank 0 writes the
    checkpoint, which every rank resumes from. Dropout is seeded per (seed, epoch, rank).
    """
    model.to(device, memory_format=torch.channels_last)
    rank, world = dist.rank(), dist.world()
    if batches.batch_size % world:
        raise ValueError(f"the batch of {batches.batch_size} does not split over {world} ranks")
    batches.rank, batches.world, net = rank, world, dist.wrap(model)
    net = torch.compile(net) if compile else net  # CUDA: fused kernels; the checkpoint keeps ``model``'s names
    # training batches all have one shape: let cuDNN time its algorithms once (evaluation's many
    # image shapes would each pay that, so it is switched off again on return)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if lr_steps:  # a fixed schedule (see the cpu profile for why)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(lr_steps), gamma=0.1)
    else:  # Sect. 3.1: divide by 10 when the monitored accuracy stops improving.
        # A plateau: the monitor (held-out accuracy, averaged over the last ``monitor_window``
        # epochs against the slice's noise, from the first full window) has not beaten its
        # best by ``plateau_threshold`` points for ``patience`` epochs.
        kw = {} if plateau_threshold is None else dict(threshold=plateau_threshold, threshold_mode="abs")
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=patience, **kw)
    end = "schedule end" if lr_steps else "epoch cap"
    result = TrainResult()
    ckpt_path = Path(checkpoint)
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        saved = ckpt.get("recipe")  # absent in checkpoints written before it was stored
        if recipe is not None and saved is not None and saved != recipe:
            diff = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {recipe.get(k)!r}"
                             for k in sorted(set(saved) | set(recipe)) if saved.get(k) != recipe.get(k))
            raise ValueError(f"{ckpt_path} was trained with other parameters ({diff}); resuming would "
                             f"mix the two. Use another run folder (out), or delete the checkpoint to start over.")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        result = TrainResult(history=ckpt["history"], stopped=ckpt["stopped"], lr_drops=ckpt["lr_drops"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if result.stopped in ("epoch cap", "schedule end") and result.epochs < max_epochs:
            result.stopped = ""  # asked for more epochs than the last call: go on
        if progress:
            tqdm.write(f"resumed from {ckpt_path.parent.name}/{ckpt_path.name} after epoch {result.epochs}")
    eval_bs = 256  # the held-out slice is small; one batch size fits every profile
    while not result.stopped:
        epoch = result.epochs + 1
        if epoch > max_epochs:
            result.stopped = end
            break
        torch.manual_seed(epoch_seed(seed, epoch) + 7_777_777 * rank)  # dropout; augmentation has its own generator
        model.train()
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        # The bar shows on a terminal only (tqdm's disable=None): in a papermill notebook its
        # redraws would become thousands of outputs; the per-epoch line below is kept there.
        bar = tqdm(batches.epoch(epoch), total=len(batches), desc=f"epoch {epoch}", disable=None if progress else True,
                   leave=False, mininterval=2.0)
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with _autocast(device):
                scores = net(x)
                loss = F.cross_entropy(scores.float(), y)
            n, loss_b, right = dist.all_sum([len(y), loss.item() * len(y), int((scores.argmax(1) == y).sum())], device)
            if not math.isfinite(loss_b):
                _set_aside(ckpt_path, "diverged", rank)
                raise TrainingDiverged(
                    f"the loss became {loss_b / n} in epoch {epoch} after {seen} images "
                    f"(lr {opt.param_groups[0]['lr']:g}); the run is marked failed. A lower lr "
                    f"or init='paper' may help.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen, loss_sum, correct = seen + int(n), loss_sum + loss_b, correct + int(right)
            elapsed = time.perf_counter() - t0
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{seen / elapsed:.0f}", refresh=False)
        train_seconds = time.perf_counter() - t0
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):  # the last step's update
            _set_aside(ckpt_path, "diverged", rank)
            raise TrainingDiverged(f"the weights became non-finite in epoch {epoch} (lr {opt.param_groups[0]['lr']:g}); "
                                   f"the run is marked failed. A lower lr may help.")
        try:
            h1, h5 = dist.from_rank0(list(topk_errors(model, *holdout, eval_bs, device)), device)
        except TrainingDiverged:
            _set_aside(ckpt_path, "diverged", rank)
            raise
        row = dict(epoch=epoch, train_loss=loss_sum / max(seen, 1),
                   train_top1_err=100.0 * (1 - correct / max(seen, 1)), holdout_top1_err=h1,
                   holdout_top5_err=h5, lr=opt.param_groups[0]["lr"],
                   seconds=time.perf_counter() - t0, images_per_s=seen / max(train_seconds, 1e-9))
        result.history.append(row)
        lr_before = opt.param_groups[0]["lr"]
        if lr_steps:
            sched.step()
        elif len(result.history) >= monitor_window:  # not before: epoch 1's lone value, kept as the best,
            window = [r["holdout_top1_err"] for r in result.history[-monitor_window:]]  # ended fine-tunes' 1e-3 at epoch 5
            sched.step(100.0 - sum(window) / monitor_window)
        if opt.param_groups[0]["lr"] < lr_before:
            if result.lr_drops == max_lr_drops and not lr_steps:  # a plateau after the last division: stop
                result.stopped = "plateau"  # (the scheduler's extra division is never used)
            else:
                result.lr_drops += 1
        if progress and rank == 0:
            tqdm.write(f"epoch {epoch:3d}  loss {row['train_loss']:.3f}  train err {row['train_top1_err']:5.1f}%"
                       f"  held-out err {h1:5.1f}% (top-5 {h5:5.1f}%)  lr {row['lr']:.0e}"
                       f"  {row['images_per_s']:.0f} img/s  {row['seconds']:.0f} s"
                       f"  (at most {(max_epochs - epoch) * row['seconds'] / 60:.0f} min left)")
        rank == 0 and _save_checkpoint(ckpt_path, model, opt, sched, result, recipe)
        if on_epoch_end is not None and rank == 0:
            on_epoch_end(epoch, result.history)
        if is_stalled(result.history, _num_classes(model), stall_epochs):
            _set_aside(ckpt_path, "stalled", rank)
            raise TrainingStalled(
                f"the training error is {row['train_top1_err']:.1f}% after {epoch} epochs, chance level "
                f"for {_num_classes(model)} classes: the net is not learning (dead ReLUs). Use the "
                f"paper's A-init (init='paper', init_a=<a finished A run>), as vgg.spec's B-5x5 row does.")
    rank == 0 and _save_checkpoint(ckpt_path, model, opt, sched, result, recipe)
    torch.backends.cudnn.benchmark = False
    return result


def _set_aside(ckpt_path: Path, why: str, rank: int) -> None:
    """Keep a failed run's checkpoint for inspection as checkpoint.<why>.pt, never resumed."""
    if rank == 0 and ckpt_path.exists():
        ckpt_path.replace(ckpt_path.with_suffix(f".{why}.pt"))


def _save_checkpoint(path: Path, model, opt, sched, result: TrainResult, recipe: dict | None) -> None:
    state = dict(model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                 history=result.history, stopped=result.stopped, lr_drops=result.lr_drops,
                 rng_cpu=torch.get_rng_state(), recipe=recipe)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_flops_per_image(model: nn.Module) -> float:
    """Model FLOPs of one training image: forward multiply-adds x 2 FLOPs x 3 (fwd + bwd)."""
    rows = describe(model.net, num_classes=model.num_classes, width=model.width, crop=model.crop)
    return 6.0 * sum(r["macs"] for r in rows)


def matmul_peak_flops(device: torch.device, sizes=(512, 1024, 2048), seconds: float = 2.0,
                      dtype: torch.dtype = torch.float32) -> float:
    """This machine's matmul FLOP/s in ``dtype`` at the current thread count: the MFU yardstick.

    The best over sizes and many short repeats, not the median: on a shared machine (two
    study runs at once, a test suite) most repeats are slowed by the neighbours, the best
    one is not. A peak measured while the machine is busy is still too low (``vgg bench``
    warns then, and caps the MFU at 1).
    """
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        end, reps = time.perf_counter() + seconds / len(sizes), 0
        while time.perf_counter() < end or reps < 2:
            t = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize()
            best, reps = max(best, 2 * n ** 3 / (time.perf_counter() - t)), reps + 1
    return best
