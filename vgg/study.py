"""The study: every run of the paper's Tables 3-6 plus B-5x5 (Sect. 4.1), as a plan.

Each planned run is one papermill execution of ``book/run_config.ipynb``. The paper's
initialisation chain (Sect. 3.1) orders them: an S = 384 net starts from the S = 256 net
of the same configuration (lr 1e-3), a jittered S in [256, 512] net from the S = 384 one.
"""
from __future__ import annotations

import json
import math
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PlannedRun:
    net: str
    train_scale: str  # paper pixels: "256", "384" or "256-512"
    seed: int
    init_from: str | None = None  # name of the run whose weights start this one
    init_a: str | None = None  # name of the A run for the paper's A-init (Sect. 3.1), see A_INIT
    lr: float | None = None  # None: the config's default (0.01 from scratch)
    multi_crop: bool = False  # Table 5 needs the 150-crop evaluation
    tables: tuple[int, ...] = ()
    dense_context: tuple[int, ...] = ()  # test scales Q at which the study measures dense context

    @property
    def name(self) -> str:
        return run_name(self.net, self.train_scale, self.seed, "ainit" if self.init_a else None)

    @property
    def parents(self) -> tuple[str, ...]:
        """The runs that must be complete before this one starts."""
        return tuple(p for p in (self.init_from, self.init_a) if p)

    def params(self, profile: str, runs_dir: str = "runs") -> dict:
        """The notebook parameters that make this run (paths relative to the repository)."""
        p = dict(net=self.net, train_scale=self.train_scale, seed=self.seed, profile=profile)
        if self.init_from:
            p["init_from"] = f"{runs_dir}/{profile}/{self.init_from}"
        if self.init_a:
            p["init"], p["init_a"] = "paper", f"{runs_dir}/{profile}/{self.init_a}"
        if self.lr is not None:
            p["lr"] = self.lr
        if self.multi_crop:
            p["multi_crop"] = True
        return p


def run_name(net: str, train_scale: str, seed: int, variant: str | None = None) -> str:
    """``<net>-S<train_scale>[-<variant>]-s<seed>``, e.g. ``D-S256-512-s0`` (DESIGN.md)."""
    return f"{net}-S{train_scale}" + (f"-{variant}" if variant else "") + f"-s{seed}"


# Seeds of the study: the claims' confidence intervals bootstrap over three (issue 8).
SEEDS = 3

# deviation: Sect. 3.1 gives 1e-3 for S = 384 from S = 256; it does not say which lr
# the jittered fine-tuning used, so we use the same 1e-3.
FINETUNE_LR = 1e-3

# (net, train_scale, start from, tables that use it, multi-crop?)
_TABLE = [
    ("A", "256", None, (3,), False),
    ("A-LRN", "256", None, (3,), False),
    ("B", "256", None, (3, 4), False),
    ("B-5x5", "256", None, (3,), False),  # Sect. 4.1, v6 text: B vs its shallow 5x5 form
    ("C", "256", None, (3, 4, 6), False),
    ("C", "384", "256", (3, 4, 6), False),
    ("C", "256-512", "384", (3, 4), False),
    ("D", "256", None, (3, 4, 6), False),
    ("D", "384", "256", (3, 4, 6), False),
    ("D", "256-512", "384", (3, 4, 5, 6), True),
    ("E", "256", None, (3, 4, 6), False),
    ("E", "384", "256", (3, 4, 6), False),
    ("E", "256-512", "384", (3, 4, 5, 6), True),
]

# deviation: every net starts from Glorot init (the paper's post-submission note, Sect. 3.1),
# except these, which get the paper's original scheme instead: N(0, 0.01) plus the layers of
# the same seed's trained A whose shapes fit (for B-5x5 only the three FC layers; its convs
# are 5x5). Glorot B-5x5 dies in its first epoch at the cpu scale: with the paper's 0-255
# inputs its 8 weight layers (B has 13) leave huge initial logits (loss 3.5-4.8), the first
# steps at lr 0.01 kill every ReLU and the loss sits at ln 10 for good. With A-init a
# one-epoch (~140-step) probe learns (mean loss 2.33 -> 2.07). A-init also gives B-5x5 A's
# trained FC head, an advantage B does not get, so "B beats B-5x5" is tested conservatively.
A_INIT = {"B-5x5"}

# Table 6: fusions of finished runs (softmax averaged), by member (net, train_scale) and
# the protocol whose probabilities are fused.
FUSIONS = {
    "ILSVRC submission (7 nets, dense)": dict(
        members=[("D", "256"), ("D", "384"), ("D", "256-512"), ("C", "256"), ("C", "384"),
                 ("E", "256"), ("E", "384")], protocol="multi-scale"),
    "D + E (dense)": dict(members=[("D", "256-512"), ("E", "256-512")], protocol="multi-scale"),
    "D + E (multi-crop)": dict(members=[("D", "256-512"), ("E", "256-512")], protocol="multi-crop"),
    "D + E (multi-crop & dense)": dict(members=[("D", "256-512"), ("E", "256-512")],
                                       protocol="multi-crop+dense"),
}


# The dense-context measurement (vgg.evaluate.dense_context, protocol chapter) of every net
# trained at S = 384 or jittered, at Q = 384: the scale where dense evaluation loses most to
# crops. It needs the run's checkpoint, so the study makes it right after the run.
DENSE_CONTEXT_Q = (384,)


def plan(seeds: int | list[int] = 1) -> list[PlannedRun]:
    """Every run of the study for ``seeds`` (a count, or a list of seeds), parents first."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    runs = []
    for seed in seed_list:
        for net, scale, parent, tables, mc in _TABLE:
            runs.append(PlannedRun(
                net=net, train_scale=scale, seed=seed,
                init_from=run_name(net, parent, seed) if parent else None,
                init_a=run_name("A", "256", seed) if net in A_INIT else None,
                lr=FINETUNE_LR if parent else None, multi_crop=mc, tables=tables,
                dense_context=DENSE_CONTEXT_Q if scale != "256" else ()))
    return runs


# --- running the plan --------------------------------------------------------------------

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "run_config.ipynb"


def stale_parents(runs: list[PlannedRun], profile: str, runs_dir: str | Path) -> dict[str, list[str]]:
    """Complete runs that must be trained again, each with the runs that need it: a run still
    to run starts from its weights and its checkpoint is gone (checkpoints are not in git,
    so a fresh clone or a new machine has none). Transitive: training a run again needs its
    own parents' weights too. Only parents within ``runs`` count."""
    from .io import ROOT
    from .train import CHECKPOINT

    base = (Path(runs_dir) if Path(runs_dir).is_absolute() else ROOT / runs_dir) / profile
    by_name = {r.name: r for r in runs}
    complete = {r.name for r in runs if _status(base / r.name) == "complete"}
    stale: dict[str, list[str]] = {}
    todo = [r for r in runs if r.name not in complete]
    while todo:
        r = todo.pop(0)
        for p in r.parents:
            if p in complete and not (base / p / CHECKPOINT).exists():
                if p not in stale:
                    todo.append(by_name[p])
                stale.setdefault(p, []).append(r.name)
    return stale


def _status(run_dir: Path) -> str:
    """complete / failed / broken / partial (a checkpoint, no result yet) / missing."""
    path = run_dir / "metrics.json"
    if path.exists():
        try:
            return "complete" if json.loads(path.read_text()).get("status") == "complete" else "failed"
        except (OSError, ValueError):
            return "broken"
    return "partial" if (run_dir / "checkpoint.pt").exists() else "missing"


def _median_price(key: tuple, samples: dict, epoch_s: dict) -> float | None:
    """An evaluation's price: the median of ``samples[key]``, key = (net, train_scale,
    multi_crop); failing that, the median over other nets' evaluations of the same kind
    (scale and multi-crop), each scaled by the ratio of the nets' median epoch times (the
    forward pass costs alike, relative to training, across nets)."""
    import statistics

    if samples.get(key):
        return statistics.median(samples[key])
    net, *kind = key
    if net not in epoch_s:
        return None
    scaled = [x * epoch_s[net] / epoch_s[other] for (other, *k), xs in samples.items()
              if k == kind and other in epoch_s for x in xs]
    return statistics.median(scaled) if scaled else None


def _speed_ratio(runs: list[PlannedRun], hists: dict, cpus: dict, here: str) -> float:
    """How long an epoch takes on this CPU relative to the others on record: the median over
    (net, training scale) of the ratio of median epoch times, here to elsewhere, where both
    are on record; 1 where none is (e.g. before the first epoch on a new machine)."""
    import statistics

    here_s, other_s = {}, {}
    for r in runs:
        if r.name in cpus and hists.get(r.name):
            group = here_s if cpus[r.name] == here else other_s
            group.setdefault((r.net, r.train_scale), []).extend(float(h["seconds"]) for h in hists[r.name])
    ratios = [statistics.median(here_s[k]) / statistics.median(other_s[k]) for k in here_s if k in other_s]
    return statistics.median(ratios) if ratios else 1.0


def progress(profile: str = "cpu", seeds: int | list[int] = 1, runs_dir: str | Path = "runs",
             runs: list[PlannedRun] | None = None, cpu: str | None = None) -> list[dict]:
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
    an upper bound. ``runs`` replaces the plan of ``seeds``.

    Epochs and evaluations timed on another CPU are scaled by ``_speed_ratio`` (the machine
    under a study can change between sessions; here an Intel Xeon trains about 1.5x faster
    than the AMD EPYC before it). A complete run's CPU is in its metrics.json; a partial
    run (a checkpoint) was trained on this one, ``cpu`` (default: this machine's)."""
    import csv
    import statistics

    from .io import ROOT, cpu_name
    from .profiles import PROFILES

    prof = PROFILES[profile]
    base = Path(runs_dir) if Path(runs_dir).is_absolute() else ROOT / runs_dir
    runs, hists, evals, cpus = (plan(seeds) if runs is None else runs), {}, {}, {}
    here = cpu_name() if cpu is None else cpu
    for r in runs:
        folder = base / profile / r.name
        if (folder / "history.csv").exists():
            with open(folder / "history.csv", newline="") as f:
                hists[r.name] = list(csv.DictReader(f))
        status = _status(folder)
        if status == "complete":
            m = json.loads((folder / "metrics.json").read_text())
            evals[r.name] = float(m.get("eval_seconds") or 0.0)
            cpus[r.name] = (m.get("provenance") or {}).get("cpu")
        elif status == "partial":  # a checkpoint: trained here (checkpoints do not travel)
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
            eval_s.setdefault((r.net, r.train_scale, r.multi_crop), []).append(evals[r.name] * k)
    scale_s = {k: statistics.median(v) for k, v in scale_s.items() if v}
    net_s = {k: statistics.median(v) for k, v in net_s.items() if v}

    rows, stale = [], stale_parents(runs, profile, base)
    for r in runs:
        folder, hist = base / profile / r.name, hists.get(r.name, [])
        last = hist[-1] if hist else {}
        state = "retrain" if r.name in stale else _status(folder)
        cap = prof.max_epochs_finetune if r.init_from else prof.max_epochs
        per_epoch = scale_s.get((r.net, r.train_scale), net_s.get(r.net))
        done = state == "complete"
        # only a checkpoint resumes: a folder without one (retrain, missing) trains from epoch 1
        todo_epochs = max(cap - len(hist), 0) if state == "partial" else cap
        left = 0.0 if done else (todo_epochs * per_epoch if per_epoch is not None else None)
        own_eval = evals.get(r.name, 0.0) * (1.0 if cpus.get(r.name) == here else speed)
        eval_left = 0.0 if done else (own_eval if state == "retrain" else None) \
            or _median_price((r.net, r.train_scale, r.multi_crop), eval_s, net_s)
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
    import heapq
    from types import SimpleNamespace

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


def execute(params: dict, out_dir: Path, *, notebook: Path = NOTEBOOK, cwd: Path | None = None,
            log_output: bool = False) -> None:
    """Run the experiment notebook with papermill; the executed copy lands in the run folder.

    papermill fails on a missing output folder, so the folder is made first. The parameters
    are checked by RunConfig before the kernel starts, so a bad value fails at once.
    """
    import papermill as pm

    from .config import RunConfig

    from .io import ROOT

    # Paths inside the repository are passed relative to it (RunConfig resolves them so), so
    # the executed notebooks that go into git carry no machine-specific paths.
    out = out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir
    params = dict(params, out=str(out))
    RunConfig.from_dict(params)  # fail fast, before a kernel starts
    out_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(out_dir / "run_config.ipynb"), parameters=params,
                        cwd=str(cwd or notebook.parents[1]), progress_bar=False, log_output=log_output)


def chain_seconds(runs: list[PlannedRun], seconds_left: dict[str, float]) -> dict[str, float]:
    """Each run's longest chain still to run: its own priced seconds left plus the longest
    chain among the runs that start from it. A run that cannot be priced yet is given
    ``inf`` in ``seconds_left``, so it and its ancestors come before any priced chain: it
    may be the longest, and running it prices the rest.

    The study starts the ready run with the longest chain first (critical-path list
    scheduling). In plan order, a seed's E chain (E at S = 256, then 384, then jittered;
    three hours in a row on the cpu profile) would start last and run alone while the
    other job idles; started first, it overlaps with everything else."""
    children: dict[str, list[str]] = {}
    for r in runs:
        for p in r.parents:
            children.setdefault(p, []).append(r.name)
    chain: dict[str, float] = {}

    def length(name: str) -> float:
        if name not in chain:
            chain[name] = seconds_left.get(name, 0.0) + max((length(c) for c in children.get(name, [])),
                                                            default=0.0)
        return chain[name]

    return {r.name: length(r.name) for r in runs}


def _seconds_left(runs: list[PlannedRun], profile: str, runs_dir: str | Path) -> dict[str, float]:
    """Priced seconds left per run (epochs and evaluation, from ``progress``): ``inf`` for a
    run whose epochs cannot be priced yet (no epoch of its net on record); an evaluation
    that cannot be priced yet counts 0 (it is small next to training, except the 150-crop
    one, which ``progress`` prices from other nets once one has run)."""
    return {r["run"]: math.inf if r["seconds_left"] is None
            else r["seconds_left"] + (r["eval_seconds_left"] or 0.0)
            for r in progress(profile, runs=runs, runs_dir=runs_dir)}


def run_study(profile: str = "cpu", seeds: int | list[int] = 1, *, runs: list[PlannedRun] | None = None,
              runs_dir: str | Path = "runs", jobs: int = 1, data: str | None = None,
              log_output: bool = False, hours: float | None = None, echo=print) -> dict[str, str]:
    """Run every missing run of the plan through papermill, parents before children.

    Complete runs are skipped, unless a run still to run starts from one whose checkpoint is
    gone: that one is trained again (``stale_parents``; its old result is summarised in
    superseded.json, ``vgg.run.retire``). Interrupted runs resume from their checkpoint (the
    notebook does that); a failed run is reported and its dependants are skipped, the rest
    go on. After a run with ``dense_context`` scales, its dense-context record is measured.
    ``jobs=2`` runs two independent runs at once with one torch thread each. Of the runs
    whose parents are complete, one whose parent's checkpoint is here (a chain begun) starts
    first, then the one with the longest priced chain (``chain_seconds``); ties, such as runs
    that cannot be priced yet, keep plan order.
    ``hours``: start a run only when it and the longest priced chain of runs that start from
    it can finish within that many hours of the study's start (on a machine that is lent for
    a while and loses its checkpoints after, a parent finished without its children would
    have to be trained again); the others are deferred. Returns {run name: outcome} with
    outcomes complete / skipped (already complete) / failed / blocked / deferred.
    """
    from .io import ROOT
    from .run import SUPERSEDED, dense_context_file, measure_dense_context, retire
    from .train import CHECKPOINT

    runs = plan(seeds) if runs is None else runs
    runs_dir = Path(runs_dir)
    base = runs_dir if runs_dir.is_absolute() else ROOT / runs_dir
    outcome: dict[str, str] = {}
    by_name = {r.name: r for r in runs}
    stale = stale_parents(runs, profile, runs_dir)
    for r in runs:
        if _status(base / profile / r.name) == "complete" and r.name not in stale:
            outcome[r.name] = "skipped"
    todo = [r for r in runs if r.name not in outcome]
    echo(f"study ({profile}): {len(runs)} runs planned, {len(outcome)} complete, {len(todo)} to run"
         + (f", {jobs} at a time" if jobs > 1 else ""))
    for name, needed_by in stale.items():
        echo(f"  {name}: complete, but its checkpoint is gone and {', '.join(needed_by)} start(s) from its "
             f"weights: training it again (its current result is summarised in {SUPERSEDED} first)")
    times: dict[str, float] = {}
    deadline = None if hours is None else time.time() + hours * 3600
    chain = chain_seconds(runs, _seconds_left(runs, profile, runs_dir))
    todo.sort(key=lambda r: -chain[r.name])  # stable: ties keep plan order

    def ready(r: PlannedRun) -> bool | None:
        """True: can start; False: wait for a parent; None: a parent failed."""
        states = []
        for name in r.parents:
            if name not in by_name:  # a parent outside this plan: it must be on disk
                states.append(True if _status(base / profile / name) == "complete" else None)
                continue
            parent = outcome.get(name)
            states.append(True if parent in ("complete", "skipped") else
                          None if parent in ("failed", "blocked", "deferred") else False)
        return None if None in states else all(states)

    def one(r: PlannedRun) -> None:
        params = r.params(profile, str(runs_dir))
        if data:
            params["data"] = data
        if jobs > 1:
            params["threads"] = 1
        t, folder = time.perf_counter(), base / profile / r.name
        try:
            if r.name in stale and _status(folder) == "complete":
                retire(folder, reason=f"trained again: its checkpoint was gone and {', '.join(stale[r.name])} "
                                      f"start(s) from its weights")
            execute(params, folder, log_output=log_output)
        finally:
            times[r.name] = time.perf_counter() - t
        for q in r.dense_context:
            if not (folder / dense_context_file(q)).exists():
                try:
                    measure_dense_context(folder, q, progress=False)
                except Exception as err:  # a diagnostic: its failure must not fail the run or its children
                    echo(f"  {r.name}: dense-context at Q={q} failed ({type(err).__name__}: {err})")

    def continues(r: PlannedRun) -> bool:
        """A parent's checkpoint is here: checkpoints do not outlive the machine, so a chain
        begun goes on before a new one starts (else its parents may have to be trained again)."""
        return any((base / profile / p / CHECKPOINT).exists() for p in r.parents)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict[Future, PlannedRun] = {}
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
                              or (p not in by_name and _status(base / profile / p) != "complete")]
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
                msg = f" ({type(err).__name__}: {str(err).strip().splitlines()[-1][:200]})" if err else ""
                echo(f"  {r.name}: {outcome[r.name]} in {times.get(r.name, 0):.0f} s{msg}")
    summary = {k: sum(1 for v in outcome.values() if v == k)
               for k in ("complete", "skipped", "failed", "blocked", "deferred")}
    echo("study summary: " + ", ".join(f"{v} {k}" for k, v in summary.items())
         + f"; {sum(times.values()):.0f} s of run time")
    return outcome
