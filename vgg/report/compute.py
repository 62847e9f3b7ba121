"""Compute and provenance: what each run cost, the compute behind the whole book, runs
trained twice or evaluated again, the runs still missing and the time they need."""
from __future__ import annotations

import json
import platform
import shlex
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd

from ..ops import gpu
from ..ops.progress import progress, time_left
from ..rundir import BrokenRun, RunDir, scan
from ..evaluate import result_key
from ..spec import FUSIONS, TABLES, plan, row
from .frame import NOT_RUN, eval_table, load_runs, runs_root

HELD_OUT = "held-out (last epoch)"


def compute_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: epochs, training time, images/s, MFU, evaluation time, hardware."""
    def col(name):
        return runs[name] if name in runs.columns else pd.Series(np.nan, index=runs.index)

    out = pd.DataFrame({
        "run": runs["run"], "epochs": col("train.epochs"), "stopped": col("train.stopped"),
        "train (h)": col("train.seconds") / 3600, "train images/s": col("train.images_per_s"),
        "MFU (%)": 100 * pd.to_numeric(col("train.mfu"), errors="coerce"),
        # protocols share work (multi-scale includes dense@Q), so their seconds overlap
        "eval (min)": col("eval_seconds") / 60,
        "device": (col("provenance.gpu").fillna(col("provenance.cpu")) if "provenance.gpu" in runs
                   else col("provenance.cpu")).map(device_name),
    })
    return out.reset_index(drop=True)


def device_name(name) -> str:
    """A CPU's or GPU's name without the trademarks: "Intel(R) Xeon(R) Processor" -> "Intel Xeon"."""
    if not isinstance(name, str):
        return "–"
    for mark in ("(R)", "(TM)", "(tm)", " Processor", " CPU", " processor"):
        name = name.replace(mark, "")
    return " ".join(name.split())


def study_compute(runs_dir=None) -> pd.DataFrame:
    """The compute behind the book, per folder under runs/ (the study, and the pilots and
    plateau-rule runs kept as evidence) and in total: training from every run's history
    (failed and unfinished runs included; their epochs were spent too) and evaluation from
    metrics.json. A re-evaluated run's first evaluation was overwritten; it is counted at
    the cost of the re-evaluation (the same protocols on the same images). A folder with
    neither a history nor a metrics.json is not counted."""
    cols = ["runs folder", "runs", "complete", "trained again", "epochs", "train (h)", "eval (h)"]
    groups: dict[str, list] = {}
    for rd in scan(runs_root(runs_dir)):
        groups.setdefault(rd.path.parent.name, []).append(rd)
    rows = []
    for group, folders in sorted(groups.items()):
        counted = train = ev = 0.0
        epochs = complete = again = 0
        for rd in folders:
            try:
                hist = rd.history()
            except (OSError, ValueError, KeyError, TypeError):
                hist = []
            try:
                m, has_metrics = rd.metrics(), None
            except BrokenRun:
                m, has_metrics = None, True
            if not hist and m is None and not has_metrics:
                continue
            counted += 1
            train, epochs = train + sum(float(r["seconds"]) for r in hist), epochs + len(hist)
            for old in rd.superseded():  # an earlier training of this folder, set aside
                train, epochs = train + float(old.get("train_seconds") or 0.0), epochs + int(old.get("epochs") or 0)
                ev += float(old.get("eval_seconds") or 0.0) * (1 + int(old.get("reevaluated") or 0))
                again += 1
            if m is not None:
                complete += m.get("status") == "complete"
                ev += float(m.get("eval_seconds") or 0.0) * (1 + len(m.get("reevaluated", [])))
        if counted:
            rows.append({"runs folder": f"runs/{group}", "runs": int(counted), "complete": complete,
                         "trained again": again, "epochs": epochs, "train (h)": train / 3600, "eval (h)": ev / 3600})
    out = pd.DataFrame(rows, columns=cols)
    if len(out):
        total = out.drop(columns="runs folder").sum()
        out = pd.concat([out, pd.DataFrame([{"runs folder": "total", **total.to_dict()}])], ignore_index=True)
    out["total (h)"] = out["train (h)"] + out["eval (h)"]
    return out.astype({"runs": int, "complete": int, "trained again": int, "epochs": int})


def retrained_table(profile: str = "cpu", runs_dir=None) -> pd.DataFrame:
    """Runs trained twice (their checkpoint was lost while a child still needed it, see
    ``vgg.study.stale_parents``): the same parameters, seed and code, another process and
    host. Per run and protocol, top-1 error of the first training (``RunDir.superseded()``)
    and of the one on record now. The difference is training noise that the seed does not
    fix: floating-point sums in another order grow apart over thousands of steps."""
    runs, _ = load_runs(profile, runs_dir)
    rows = []
    for _, r in runs.iterrows():
        rd = RunDir(r["path"])
        now, results = rd.metrics(), rd.results()
        for old in rd.superseded():
            pairs = [(HELD_OUT, old.get("final_holdout_top1_err"), now.get("train", {}).get("final_holdout_top1_err"))]
            pairs += [(p, e, results.get(p, {}).get("top1_err")) for p, e in (old.get("top1_err") or {}).items()]
            for protocol, before, after in pairs:
                if before is None or after is None:
                    continue
                rows.append({"run": r["run"], "protocol": protocol, "first training": float(before),
                             "second training": float(after), "change": round(float(after) - float(before), 2),
                             "first on": old.get("cpu"), "second on": now.get("provenance", {}).get("cpu")})
    return pd.DataFrame(rows, columns=["run", "protocol", "first training", "second training", "change",
                                       "first on", "second on"])


def retrained_summary(t: pd.DataFrame) -> dict:
    """The numbers of ``retrained_table`` the compute chapter states, over the evaluation
    errors (the held-out check left out: a 5% slice of the training images): ``runs``,
    ``first_on`` and ``second_on`` (the CPUs, joined by "and"), ``n`` errors, the median and
    largest absolute change and the mean change (NaN without any)."""
    ev = t[t["protocol"] != HELD_OUT]
    ch = ev["change"].abs()

    def cpus(col):
        return " and ".join(sorted({str(c) for c in t[col].dropna()})) or "an unrecorded CPU"

    return dict(runs=int(t["run"].nunique()), first_on=cpus("first on"), second_on=cpus("second on"), n=len(ev),
                median=float(ch.median()) if len(ev) else np.nan, largest=float(ch.max()) if len(ev) else np.nan,
                mean=float(ev["change"].mean()) if len(ev) else np.nan)


def reevaluation_table(profile: str = "cpu", runs_dir=None) -> pd.DataFrame:
    """Top-1 error of every re-evaluated run of ``profile`` before and after, per protocol,
    from the ``reevaluated`` record of its metrics.json (made by the ``reevaluate`` command
    of earlier versions, which evaluated runs again after dense windows were centred)."""
    runs, _ = load_runs(profile, runs_dir)
    rows = []
    for _, r in runs.iterrows():
        rd = RunDir(r["path"])
        results = rd.results()
        for entry in rd.metrics().get("reevaluated", []):
            for protocol, before in entry.get("top1_err_before", {}).items():
                after = results.get(protocol, {}).get("top1_err")
                rows.append({"run": r["run"], "protocol": protocol,
                             "version": f"{entry['from_version']} → {entry['to_version']}",
                             "top-1 before": before, "top-1 after": after,
                             "change": None if after is None else round(after - before, 2)})
    return pd.DataFrame(rows, columns=["run", "protocol", "version", "top-1 before", "top-1 after", "change"])


def run_date(path) -> str | None:
    """When a run finished: its provenance's date, else the end time papermill wrote into its
    executed notebook (runs made before the date was recorded), else None."""
    rd = RunDir(path)
    date = ((rd.metrics() or {}).get("provenance") or {}).get("date")
    for nb in (rd.path / "run_config.first.ipynb", rd.path / "run_config.ipynb"):  # first: re-executed later
        if date is None and nb.exists():
            try:
                date = json.loads(nb.read_text())["metadata"]["papermill"].get("end_time")
            except (ValueError, KeyError):
                pass
    return date[:16].replace("T", " ") if date else None


def provenance_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Where and with what each complete run was made: the date it finished, the commit,
    the machine (an id of its host name, and its CPU or GPU) and the torch build."""
    rows = []
    for _, r in runs.iterrows():
        p = (RunDir(r["path"]).metrics() or {}).get("provenance") or {}
        rows.append({"run": r["run"], "finished (UTC)": run_date(r["path"]) or "–",
                     "commit": (p.get("git_commit") or "–")[:10] + ("+dirty" if "dirty" in (p.get("git_commit") or "") else ""),
                     "host": p.get("host", "–"), "device": device_name(p.get("gpu") or p.get("cpu")),
                     "torch": p.get("torch", "–")})
    return pd.DataFrame(rows, columns=["run", "finished (UTC)", "commit", "host", "device", "torch"])


def versions() -> pd.DataFrame:
    """Versions of the packages the book and the runs use."""
    rows = []
    for p in ("torch", "torchvision", "numpy", "pandas", "matplotlib", "jupyter-book", "myst-nb", "sphinx",
              "papermill"):
        try:
            rows.append((p, version(p)))
        except PackageNotFoundError:
            rows.append((p, "not installed"))
    rows.append(("python", platform.python_version()))
    return pd.DataFrame(rows, columns=["package", "version"])


# --- what is missing ---------------------------------------------------------------------

def command(planned, profile: str) -> str:
    """The command that makes a planned run: ``python -m vgg run`` makes the run folder
    (papermill alone refuses a missing one) and takes the plan's row (init chain, lr,
    protocols, overrides)."""
    parts = ["python", "-m", "vgg", "run", planned.net, "--train-scale", planned.train_scale,
             "--seed", str(planned.seed), "--profile", profile]
    return " ".join(shlex.quote(p) for p in parts)


def missing_runs(profile: str, seeds=1, runs_dir=None) -> list[tuple[str, str]]:
    """(name, command) for every run of the plan without a complete result."""
    runs, _ = load_runs(profile, runs_dir)
    done = set(runs["run"])
    return [(p.name, command(p, profile)) for p in plan(seeds, profile=profile) if p.name not in done]


def table_sources(n: int, runs: pd.DataFrame, profile: str) -> str:
    """Markdown: the runs that feed paper table ``n`` (vgg.spec.TABLES) in this profile, and
    the command that remakes them."""
    pairs = []
    for r in TABLES[n].rows:
        members = FUSIONS[r.ours.net].members if r.ours.net in FUSIONS else [(r.ours.net, r.ours.train_scale)]
        pairs += [m for m in members if m not in pairs]
    have = runs[["net", "train_scale", "run"]] if len(runs) else pd.DataFrame(columns=["net", "train_scale", "run"])
    names = [f"`{x}`" for net, s in pairs for x in have.loc[(have["net"] == net) & (have["train_scale"] == s), "run"]]
    planned = ", ".join(f"{net} S = {s.replace('-', '–')}" for net, s in pairs)
    return (f"**Runs behind this table** ({planned}; every seed): {', '.join(names) or NOT_RUN}. "
            f"Remake them with `python -m vgg study --profile {profile}` (each one's own command is on "
            f"the status page); the book reads them from `runs/{profile}/`.")


def missing_table(profile: str, seeds=1, runs_dir=None) -> pd.DataFrame:
    return pd.DataFrame(missing_runs(profile, seeds, runs_dir), columns=["run", "command"])


def missing_results(runs: pd.DataFrame) -> pd.DataFrame:
    """Complete runs without a result of one of the protocols their row of the plan asks for
    at their profile (``vgg.spec.row``, ``Run.protocols_at``):
    an older run keeps the results of an older protocol under names of their own, and a
    protocol added to the plan later is not in the runs made before. Columns: run, missing
    (result keys), command (``python -m vgg evaluate``, which adds them from the weights)."""
    rows, ev = [], eval_table(runs)
    for _, r in runs.iterrows():
        planned = row(r["net"], r["train_scale"])
        if planned is None:
            continue
        have = set(ev.loc[(ev["run"] == r["run"]) & (ev["profile"] == r["profile"]), "result"])
        todo = [p for p in planned.protocols_at(r["profile"]) if result_key(p, r["train_scale"]) not in have]
        if todo:
            where = f"runs/{r['profile']}/{r['run']}"
            rows.append({"run": r["run"], "missing": ", ".join(result_key(p, r["train_scale"]) for p in todo),
                         "command": " ".join(["python -m vgg evaluate", shlex.quote(where)]
                                             + [f"-P {p}" for p in todo])})
    return pd.DataFrame(rows, columns=["run", "missing", "command"])


def hours_left(profile: str, seeds, runs_dir=None, jobs: int = 2) -> dict:
    """What the missing runs of the plan need, priced at what the finished ones took
    (``vgg.ops.progress``): ``runs`` missing, ``priced`` and ``unpriced`` of them, hours of
    training (``train_h``), evaluation (``eval_h``), both (``total_h``), and wall-clock hours
    with ``jobs`` at a time, each run waiting for its parents (``wall_h``)."""
    rows = progress(profile, seeds, runs_root(runs_dir).resolve(), runs=plan(seeds, profile=profile))
    t = time_left(rows, jobs=jobs)
    return dict(runs=t["runs"], priced=t["priced"], unpriced=t["unpriced"], train_h=t["train_s"] / 3600,
                eval_h=t["eval_s"] / 3600, total_h=(t["train_s"] + t["eval_s"]) / 3600, wall_h=t["wall_s"] / 3600)


def gpu_cost(runs_dir=None) -> tuple[pd.DataFrame, dict]:
    """One seed of the study per profile in GPU-hours (vgg.ops.gpu.study_cost): from D's rates
    measured by ``make gpu-check`` (runs/gpu-check/bench-gpu.json) when they are here, else from
    the stated assumption (``gpu.assumed_rates``). Returns (table, the bench's record or {})."""
    root = runs_root(runs_dir)
    path = root / "gpu-check" / "bench-gpu.json"
    bench = json.loads(path.read_text()) if path.exists() else {}
    rates = {p: bench[f"D@{p}"]["images_per_s"] for p in gpu.PROFILE_ORDER if f"D@{p}" in bench} or gpu.assumed_rates()
    cost = gpu.study_cost(rates, root)
    table = pd.DataFrame([{"profile": p, "D img/s": c["d_images_per_s"], "training (GPU-h)": c["train_h"],
                           "evaluation (GPU-h)": c["eval_h"], "one seed (GPU-h)": c["total_h"],
                           "epochs from": ", ".join(c["epochs_from"])} for p, c in cost.items()])
    return table, bench


__all__ = ["compute_table", "study_compute", "retrained_table", "retrained_summary", "reevaluation_table",
           "versions", "provenance_table", "run_date", "table_sources", "command", "missing_runs", "missing_table", "missing_results", "hours_left", "gpu_cost"]
