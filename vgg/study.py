"""The study: every run of ``vgg.spec.RUNS`` for each seed, each one papermill execution of
``book/run_config.ipynb``, parents before children (the init chain of Sect. 3.1).

Resumable: complete runs are skipped, interrupted ones resume from their checkpoint (the
notebook does that). A complete parent that a run still to run needs, but whose weights are
gone (runs made before weights were kept, on a fresh clone), is trained again first, its
old result set aside (``RunDir.retire``). How long runs take (``vgg.ops.progress``) orders
them: of the runs whose parents are done, the longest chain still to come starts first.
"""
from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

from .config import RunConfig
from .io import ROOT
from . import notebook
from .data import find_data
from .profiles import get_profile
from .run import run_experiment
from .rundir import RunDir
from .spec import Planned, plan

NOTEBOOK = notebook.NOTEBOOK


def base_dir(runs_dir: str | Path, profile: str) -> Path:
    runs_dir = Path(runs_dir)
    return (runs_dir if runs_dir.is_absolute() else ROOT / runs_dir) / profile


def stale_parents(runs: list[Planned], profile: str, runs_dir: str | Path) -> dict[str, list[str]]:
    """Complete runs that must be trained again, each with the runs that need it: a run still
    to run starts from its weights and they are gone. Transitive (training a run again needs
    its own parents' weights too); only parents within ``runs`` count."""
    base = base_dir(runs_dir, profile)
    by_name = {r.name: r for r in runs}
    complete = {r.name for r in runs if RunDir(base / r.name).is_complete()}
    stale: dict[str, list[str]] = {}
    todo = [r for r in runs if r.name not in complete]
    while todo:
        r = todo.pop(0)
        for p in r.parents:
            if p in complete and p in by_name and not RunDir(base / p).has_weights():
                if p not in stale:
                    todo.append(by_name[p])
                stale.setdefault(p, []).append(r.name)
    return stale


def chain_seconds(runs: list, seconds_left: dict[str, float]) -> dict[str, float]:
    """Each run's longest chain still to run: its own seconds left plus the longest chain
    among the runs that start from it (critical-path list scheduling: a seed's E chain, three
    runs in a row, started last would run alone while the other job idles). A run that
    cannot be priced has ``inf``, so it and its ancestors come first: running it prices the rest."""
    children: dict[str, list[str]] = {}
    for r in runs:
        for p in r.parents:
            children.setdefault(p, []).append(r.name)
    chain: dict[str, float] = {}

    def length(name: str) -> float:
        if name not in chain:
            chain[name] = seconds_left.get(name, 0.0) + max((length(c) for c in children.get(name, [])), default=0.0)
        return chain[name]

    return {r.name: length(r.name) for r in runs}


def execute(params: dict, out_dir: Path, *, name: str | None = None, echo=None) -> None:
    """Make one run through the notebook (``vgg.notebook.execute``), its executed copy in the
    run folder. The parameters are checked before a kernel starts; a complete run starts no
    kernel and touches no file (protocols it lacks are added from its weights); a folder that
    another process owns is refused at once (``RunDir.lock`` in the kernel refuses it too)."""
    # Paths inside the repository are passed relative to it, so the executed notebooks that
    # go into git carry no machine-specific paths (RunConfig resolves them against the root).
    out = out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir
    params = dict(params, out=str(out))
    cfg = RunConfig.from_dict(params)
    rd = RunDir(out_dir)
    if rd.is_complete():
        run_experiment(cfg, progress=False)  # refuses other parameters; adds protocols it lacks
        return
    rd.check_free()  # the kernel's RunDir.lock refuses it too, but only after a kernel has started
    notebook.execute(params, out_dir, name=name or out_dir.name, echo=echo)


def run_study(profile: str = "cpu", seeds: int | list[int] = 1, *, runs: list[Planned] | None = None,
              runs_dir: str | Path = "runs", jobs: int = 1, data: str | None = None, log_output: bool = True,
              hours: float | None = None, price: Callable[[list[Planned]], dict[str, float]] | None = None,
              echo=print) -> dict[str, str]:
    """Run every missing run of the plan, parents before children; ``jobs`` at a time (one
    torch thread each when more than one). A failed run is reported and its dependants are
    blocked; the rest go on. Of the ready runs, one whose parent's checkpoint is here (a
    chain begun: checkpoints do not outlive a machine) starts first, then the one with the
    longest chain by ``price`` (seconds left per run, ``vgg.ops.progress.seconds_left``;
    without it, plan order). ``hours``: start a run only when it and the longest chain of
    runs that start from it fit in that many hours from now; defer the others. Returns
    {run: complete / skipped (already complete) / failed / blocked / deferred}."""
    runs = plan(seeds, profile=profile) if runs is None else runs
    if not runs:
        raise ValueError(f"the plan for seeds {seeds!r} has no runs: give one seed or more (--seeds N, N >= 1)")
    find_data(data, get_profile(profile).data_folder)  # once, before any kernel: no data, no study
    base = base_dir(runs_dir, profile)
    outcome: dict[str, str] = {}
    by_name = {r.name: r for r in runs}
    stale = stale_parents(runs, profile, runs_dir)
    for r in runs:
        if RunDir(base / r.name).is_complete() and r.name not in stale:
            outcome[r.name] = "skipped"
    todo = [r for r in runs if r.name not in outcome]
    echo(f"study ({profile}): {len(runs)} runs planned, {len(outcome)} complete, {len(todo)} to run"
         + (f", {jobs} at a time" if jobs > 1 else ""))
    for name, needed_by in stale.items():
        echo(f"  {name}: complete, but its weights are gone and {', '.join(needed_by)} start(s) from them: "
             f"training it again (its current result is summarised in {RunDir.SUPERSEDED} first)")
    times: dict[str, float] = {}
    deadline = None if hours is None else time.time() + hours * 3600
    chain = chain_seconds(runs, price(runs) if price else {})
    todo.sort(key=lambda r: -chain[r.name])  # stable: ties keep plan order

    def ready(r: Planned) -> bool | None:
        """True: can start; False: wait for a parent; None: a parent failed."""
        states = []
        for name in r.parents:
            if name not in by_name:  # a parent outside this plan: it must be on disk
                states.append(True if RunDir(base / name).is_complete() else None)
                continue
            parent = outcome.get(name)
            states.append(True if parent in ("complete", "skipped") else
                          None if parent in ("failed", "blocked", "deferred") else False)
        return None if None in states else all(states)

    def one(r: Planned) -> None:
        # parent folders inside the repository are passed relative to it (RunConfig resolves
        # them there), so the records that go into git name no machine's paths and a recipe
        # check on another machine matches them
        where = base.parent
        params = r.params(profile, str(where.relative_to(ROOT)) if where.is_relative_to(ROOT) else str(where))
        params.update({"data": data} if data else {}, **({"threads": 1} if jobs > 1 else {}))
        t, rd = time.perf_counter(), RunDir(base / r.name)
        try:
            if r.name in stale and rd.is_complete():
                rd.retire(reason=f"trained again: its weights were gone and {', '.join(stale[r.name])} "
                                 f"start(s) from them")
            execute(params, rd.path, name=r.name, echo=(lambda line: echo(f"  {r.name}: {line.strip()}"))
                    if log_output else None)
        finally:
            times[r.name] = time.perf_counter() - t

    def continues(r: Planned) -> bool:
        return any((base / p / RunDir.CHECKPOINT).exists() for p in r.parents)

    notebook.sigterm_interrupts()
    running: dict[Future, Planned] = {}
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            try:
                while todo or running:
                    todo.sort(key=lambda r: not continues(r))  # stable: the longest chain first within each
                    for r in list(todo):
                        state = ready(r)
                        if state is None and any(outcome.get(p) == "deferred" for p in r.parents):
                            outcome[r.name] = "deferred"
                            todo.remove(r)
                        elif state and deadline is not None and time.time() + chain[r.name] > deadline:
                            outcome[r.name] = "deferred"
                            echo(f"  {r.name}: deferred (it and the runs that start from it need about "
                                 f"{chain[r.name] / 3600:.1f} h; {max(deadline - time.time(), 0) / 3600:.1f} h are left)")
                            todo.remove(r)
                        elif state is None:
                            outcome[r.name] = "blocked"
                            failed = [p for p in r.parents if outcome.get(p) in ("failed", "blocked")
                                      or (p not in by_name and not RunDir(base / p).is_complete())]
                            echo(f"  {r.name}: blocked (its parent {', '.join(failed)} did not complete)")
                            todo.remove(r)
                        elif state and len(running) < jobs:
                            echo(f"  {r.name}: running")
                            running[pool.submit(one, r)] = r
                            todo.remove(r)
                    if not running:
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        r = running.pop(fut)
                        err = fut.exception()
                        outcome[r.name] = "failed" if err else "complete"
                        msg = "" if not err else (" (killed by a signal)" if isinstance(err, KeyboardInterrupt)
                                                  else f" ({str(err).strip().splitlines()[-1][:300]})")
                        echo(f"  {r.name}: {outcome[r.name]} in {times.get(r.name, 0):.0f} s{msg}")
            except KeyboardInterrupt:  # kill the notebooks first: the pool would wait for them
                notebook.stop_all()
                raise
    except KeyboardInterrupt:
        stopped = sorted(r.name for r in running.values())
        echo(f"study stopped: {', '.join(stopped) or 'no run was running'}"
             + (" (each resumes from its last checkpoint)" if stopped else "")
             + f"; to go on, run the same command again (python -m vgg study --profile {profile} ...)")
        raise
    summary = {k: sum(1 for v in outcome.values() if v == k) for k in ("complete", "skipped", "failed", "blocked",
                                                                       "deferred")}
    echo("study summary: " + ", ".join(f"{v} {k}" for k, v in summary.items())
         + f"; {sum(times.values()):.0f} s of run time")
    return outcome


__all__ = ["run_study", "execute", "stale_parents", "chain_seconds", "NOTEBOOK", "base_dir"]
