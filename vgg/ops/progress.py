"""Where a study stands and how long the rest will take: an operator's tool beside the core.

``progress`` reads each planned run's folder (nothing is run); ``seconds_left`` prices what
is still to run from the epochs and evaluations on record, which the study uses to start the
longest chain first (``python -m vgg study``) and ``--status`` prints.
"""
from __future__ import annotations

import heapq
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

from ..io import cpu_name
from ..profiles import PROFILES
from ..rundir import RunDir
from ..spec import Planned, plan
from ..study import base_dir, chain_seconds, stale_parents


def _kind(r: Planned) -> tuple:
    """What an evaluation's price depends on: the net, its scale and the 150-crop protocol."""
    return (r.net, r.train_scale, "multi-crop" in r.protocols)


def _median_price(key: tuple, samples: dict, epoch_s: dict) -> float | None:
    """An evaluation's price: the median of ``samples[key]``, key = (net, train_scale,
    multi_crop); failing that, the median over other nets' evaluations of the same kind
    (scale and multi-crop), each scaled by the ratio of the nets' median epoch times (the
    forward pass costs alike, relative to training, across nets)."""
    if samples.get(key):
        return statistics.median(samples[key])
    net, *kind = key
    if net not in epoch_s:
        return None
    scaled = [x * epoch_s[net] / epoch_s[other] for (other, *k), xs in samples.items()
              if k == kind and other in epoch_s for x in xs]
    return statistics.median(scaled) if scaled else None


def _speed_ratio(runs: list[Planned], hists: dict, cpus: dict, here: str) -> float:
    """How long an epoch takes on this CPU relative to the others on record: the median over
    (net, training scale) of the ratio of median epoch times, here to elsewhere, where both
    are on record; 1 where none is (e.g. before the first epoch on a new machine)."""
    here_s, other_s = {}, {}
    for r in runs:
        if r.name in cpus and hists.get(r.name):
            group = here_s if cpus[r.name] == here else other_s
            group.setdefault((r.net, r.train_scale), []).extend(float(h["seconds"]) for h in hists[r.name])
    ratios = [statistics.median(here_s[k]) / statistics.median(other_s[k]) for k in here_s if k in other_s]
    return statistics.median(ratios) if ratios else 1.0


def progress(profile: str = "cpu", seeds: int | list[int] = 1, runs_dir: str | Path = "runs",
             runs: list[Planned] | None = None, cpu: str | None = None) -> list[dict]:
    """Where each planned run stands, read from its folder (nothing is run): state (complete,
    retrain: complete, but a run still to run needs its lost checkpoint, ``stale_parents``;
    partial, missing, failed, broken), epochs
    trained so far (history.csv) of the planned ``epochs_cap``, the last lr and held-out
    top-1 error, the seconds of its epochs (training plus each epoch's held-out check, as
    history.csv records them), the seconds of its evaluation (metrics.json), and estimates
    of what is still to run: ``seconds_left`` for the epochs, ``eval_seconds_left`` for the
    evaluation after them.

    A missing epoch is priced at the median epoch of the same net and training scale over
    every seed (the run's own epochs included); failing that, of the same net at any scale
    (every scale trains on crops of the same size; larger images cost a little more to
    load). A missing evaluation is priced at the median evaluation of complete runs of the
    same net, training scale and multi-crop setting (the 150-crop protocol is most of a
    jittered D's); failing that, at other nets' evaluations of the same kind, scaled by the
    ratio of epoch times. None where there is nothing to price from yet.
    Under a fixed schedule the cap is the length of every run; under the plateau rule it is
    an upper bound, and a run is priced at the median length of the complete runs that
    started alike (from scratch, or fine-tuned from another), the cap while there are none.
    Epochs timed with two jobs sharing the cores are slower than alone, and count as timed.
    ``runs`` replaces the plan of ``seeds``.

    Epochs and evaluations timed on another CPU are scaled by ``_speed_ratio`` (the machine
    under a study can change between sessions; here an Intel Xeon trains about 1.5x faster
    than the AMD EPYC before it). A complete run's CPU is in its metrics.json; a partial
    run (a checkpoint) was trained on this one, ``cpu`` (default: this machine's)."""
    prof = PROFILES[profile]
    base = base_dir(runs_dir, profile)
    runs, hists, evals, cpus = (plan(seeds, profile=profile) if runs is None else runs), {}, {}, {}
    states, resumes = {}, {}  # each folder read once
    here = cpu_name() if cpu is None else cpu
    for r in runs:
        rd = RunDir(base / r.name)
        history = rd.history()
        if history:
            hists[r.name] = history
        states[r.name] = status = rd.state()
        # only a checkpoint resumes: a folder without one (retrain, missing) trains from epoch 1
        resumes[r.name] = status == "partial" and rd.checkpoint.exists()
        if status == "complete":
            m = rd.metrics()
            evals[r.name] = float(m.get("eval_seconds") or 0.0)
            cpus[r.name] = (m.get("provenance") or {}).get("cpu")
        elif resumes[r.name]:  # trained here (checkpoints do not travel)
            cpus[r.name] = here
    speed = _speed_ratio(runs, hists, cpus, here)
    # seconds of every epoch, by (net, scale) and by net; evaluation seconds by (net, scale,
    # multi-crop); those made on another CPU scaled to this one's speed
    scale_s, net_s, eval_s = {}, {}, {}
    for r in runs:
        k = 1.0 if cpus.get(r.name) == here else speed
        secs = [float(h["seconds"]) * k for h in hists.get(r.name, [])]
        scale_s.setdefault((r.net, r.train_scale), []).extend(secs)
        net_s.setdefault(r.net, []).extend(secs)
        if evals.get(r.name):
            eval_s.setdefault(_kind(r), []).append(evals[r.name] * k)
    scale_s = {k: statistics.median(v) for k, v in scale_s.items() if v}
    net_s = {k: statistics.median(v) for k, v in net_s.items() if v}

    # under the plateau rule a run stops once it stops improving, mostly well short of its
    # cap (cpu128: 45-76 of 90 from scratch, 26-39 of 60 fine-tuning): price it at the median
    # length of the complete runs that started alike, the cap while none has finished
    lengths = {}
    for r in runs:
        if prof.lr_steps is None and states[r.name] == "complete" and hists.get(r.name):
            lengths.setdefault(bool(r.init_from), []).append(len(hists[r.name]))
    rows, stale = [], stale_parents(runs, profile, runs_dir)
    for r in runs:
        hist = hists.get(r.name, [])
        last = hist[-1] if hist else {}
        state = "retrain" if r.name in stale else states[r.name]
        cap = prof.max_epochs_finetune if r.init_from else prof.max_epochs
        typical = lengths.get(bool(r.init_from))
        expected = min(cap, round(statistics.median(typical))) if typical else cap
        per_epoch = scale_s.get((r.net, r.train_scale), net_s.get(r.net))
        done = state == "complete"
        # a run already past the typical length has at least one epoch to go, at most its cap
        todo_epochs = min(max(expected - len(hist), 1), cap - len(hist)) \
            if resumes[r.name] and state != "retrain" else expected
        left = 0.0 if done else (todo_epochs * per_epoch if per_epoch is not None else None)
        own_eval = evals.get(r.name, 0.0) * (1.0 if cpus.get(r.name) == here else speed)
        eval_left = 0.0 if done else (own_eval if state == "retrain" else None) \
            or _median_price(_kind(r), eval_s, net_s)
        rows.append(dict(run=r.name, state=state, parents=r.parents, epochs=len(hist), epochs_cap=cap,
                         lr=float(last["lr"]) if last else None,
                         holdout_top1_err=float(last["holdout_top1_err"]) if last else None,
                         seconds=sum(float(h["seconds"]) for h in hist), seconds_left=left,
                         eval_seconds=evals.get(r.name, 0.0), eval_seconds_left=eval_left))
    return rows


def time_left(rows: list[dict], jobs: int = 2) -> dict:
    """Totals of ``progress`` rows still to run: seconds of epochs and of evaluation over the
    runs that can be priced, how many cannot (None in either estimate), and ``wall_s``,
    the wall-clock seconds with ``jobs`` at a time (``wall_seconds``)."""
    todo = [r for r in rows if r["state"] != "complete"]
    priced = [r for r in todo if r["seconds_left"] is not None and r["eval_seconds_left"] is not None]
    return dict(runs=len(todo), priced=len(priced), unpriced=len(todo) - len(priced),
                train_s=sum(r["seconds_left"] for r in priced),
                eval_s=sum(r["eval_seconds_left"] for r in priced),
                wall_s=wall_seconds(priced, jobs))  # a parent not among them counts as complete


def wall_seconds(rows: list[dict], jobs: int = 2) -> float:
    """Wall-clock seconds until the runs of ``rows`` (``progress``) still to run are done
    with ``jobs`` at a time, scheduled as ``run_study`` does: a run starts once its parents
    are complete, the longest chain first. Runs in progress count as starting now; a parent
    missing from ``rows`` counts as complete. Total seconds / jobs would understate it: a
    chain of runs is serial (a seed's E chain is about 3 h here)."""
    left = {r["run"]: (r["seconds_left"] or 0.0) + (r["eval_seconds_left"] or 0.0)
            for r in rows if r["state"] != "complete"}
    nodes = [SimpleNamespace(name=r["run"], parents=tuple(p for p in r["parents"] if p in left))
             for r in rows if r["run"] in left]
    chain = chain_seconds(nodes, left)
    todo = sorted(nodes, key=lambda n: -chain[n.name])
    done, running, t = set(), [], 0.0
    while todo or running:
        for n in list(todo):
            if len(running) < jobs and all(p in done for p in n.parents):
                heapq.heappush(running, (t + left[n.name], n.name))
                todo.remove(n)
        t, name = heapq.heappop(running)
        done.add(name)
    return t


def format_progress(rows: list[dict], jobs: int = 2) -> str:
    """``progress`` as a plain-text table with totals and an estimate of the time left with
    ``jobs`` runs at a time, each run waiting for its parents (``wall_seconds``)."""
    def minutes(x):
        return f"{x / 60:.0f}" if x is not None else "?"

    lines = [f"{'run':<24}{'state':<10}{'epochs':>9}{'lr':>9}{'held-out err':>14}"
             f"{'train min':>11}{'eval min':>10}{'min left':>10}"]
    for r in rows:
        lr = f"{r['lr']:g}" if r["lr"] is not None else "-"
        err = f"{r['holdout_top1_err']:.1f}" if r["holdout_top1_err"] is not None else "-"
        both = None if None in (r["seconds_left"], r["eval_seconds_left"]) else r["seconds_left"] + r["eval_seconds_left"]
        epochs = f"{r['epochs']}/{r['epochs_cap']}"
        lines.append(f"{r['run']:<24}{r['state']:<10}{epochs:>9}{lr:>9}{err:>14}"
                     f"{r['seconds'] / 60:>11.1f}{r['eval_seconds'] / 60:>10.1f}{minutes(both):>10}")
    done = sum(r["state"] == "complete" for r in rows)
    spent = sum(r["seconds"] for r in rows) / 3600, sum(r["eval_seconds"] for r in rows) / 3600
    lines.append(f"{done} of {len(rows)} complete; {spent[0]:.1f} h of epochs and {spent[1]:.1f} h "
                 f"of evaluation so far")
    t = time_left(rows, jobs)
    if t["runs"]:
        h = (t["train_s"] + t["eval_s"]) / 3600
        lines.append(f"left: {t['train_s'] / 3600:.1f} h of epochs + {t['eval_s'] / 3600:.1f} h of evaluation"
                     f" = {h:.1f} h, about {t['wall_s'] / 3600:.1f} h with {jobs} job{'s' if jobs > 1 else ''}"
                     + (f"; plus {t['unpriced']} run(s) that cannot be priced yet (?)" if t["unpriced"] else ""))
    return "\n".join(lines)


def seconds_left(runs: list[Planned], profile: str, runs_dir: str | Path) -> dict[str, float]:
    """Priced seconds left per run (epochs and evaluation, from ``progress``): ``inf`` for a
    run whose epochs cannot be priced yet (no epoch of its net on record); an evaluation
    that cannot be priced yet counts 0 (it is small next to training, except the 150-crop
    one, which ``progress`` prices from other nets once one has run)."""
    return {r["run"]: math.inf if r["seconds_left"] is None
            else r["seconds_left"] + (r["eval_seconds_left"] or 0.0)
            for r in progress(profile, runs=runs, runs_dir=runs_dir)}


__all__ = ["progress", "time_left", "wall_seconds", "format_progress", "seconds_left"]
