"""Command line: ``python -m vgg run|study|evaluate|bench|data`` (see README.md)."""
from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

from .. import data as D
from .. import distributed as dist
from ..config import RunConfig
from ..evaluate import PROTOCOLS
from ..model import NETS
from . import bench
from .progress import format_progress, progress, seconds_left
from ..profiles import PROFILES, get_profile
from ..rundir import RunDir
from ..run import evaluate_more, run_experiment
from ..spec import SEEDS, name_of, out_dir, row
from .. import notebook
from ..study import execute, run_study


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vgg", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="one experiment, through the papermill notebook (under torchrun: DDP, "
                                                 "in-process on every rank, no notebook)")
    r.add_argument("net", choices=NETS)
    r.add_argument("--train-scale", default="256", help='S in paper pixels: "256", "384" or "256-512"')
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)}")
    r.add_argument("--out", default=None, help="the run folder (default runs/<profile>/<run name>); "
                                               "a relative path is relative to the current directory")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any other notebook parameter, e.g. -p epochs=5 -p lr=0.003 (the run's name then "
                        "says so: D-S256-lr0.003-s0); paths (data, init_from, init_a) are relative to the "
                        "current directory")

    s = sub.add_parser("study", help="every run of the plan (vgg.spec.RUNS) that is not complete yet")
    s.add_argument("--profile", default="cpu")
    s.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds 0..N-1 (default {SEEDS})")
    s.add_argument("--jobs", type=int, default=1, help="runs at once (one torch thread each when > 1)")
    s.add_argument("--data", default=None, help="the image folder (default: the profile's; relative to the "
                                                "current directory)")
    s.add_argument("--runs-dir", default="runs", help="where run folders go (relative to the current directory)")
    s.add_argument("--status", action="store_true", help="show where each planned run stands; run nothing")
    s.add_argument("--hours", type=float, default=None,
                   help="start only runs that, with the runs that start from them, fit in this many hours "
                        "(priced from the epochs on record); defer the others")

    e = sub.add_parser("evaluate", help="add protocols to finished runs, from their weights")
    e.add_argument("runs", nargs="+", help="finished run folders")
    e.add_argument("-P", "--protocol", action="append", default=None, choices=list(PROTOCOLS),
                   help="a protocol to add (repeat); default: the run's own protocols")

    b = sub.add_parser("bench", help="speed benchmarks (not tests)")
    b.add_argument("what", choices=list(bench.BENCHES))
    b.add_argument("--out", help="bench gpu: also write its figures to this JSON file")

    d = sub.add_parser("data", help="where the images are; --download fetches Imagenette")
    d.add_argument("--download", action="store_true", help="fetch Imagenette at 160 and 320 px (internet needed)")
    d.add_argument("--root", default="data")
    return ap


PATHS = ("data", "init_from", "init_a", "out")


def _absolute(value):
    """A path the user typed, resolved against the directory they ran the command in."""
    return None if value is None else str(Path(value).expanduser().resolve())


def run_params(args, ap) -> dict:
    """The parameters of ``vgg run``: the plan's row for (net, scale), so this command makes
    exactly the run `make study` would; ``-p`` overrides them (and names the variant)."""
    base = row(args.net, args.train_scale)
    params = (base.params(args.seed, args.profile) if base else
              dict(net=args.net, train_scale=args.train_scale, seed=args.seed, profile=args.profile))
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"-p takes NAME=VALUE, got {item!r}")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
        if key in PATHS:
            params[key] = _absolute(str(params[key]))
    return params


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if os.environ.get("VGG_DATA"):  # the kernels run in the repository root: pass it on absolute
        os.environ["VGG_DATA"] = _absolute(os.environ["VGG_DATA"])
    if args.cmd == "run":
        get_profile(args.profile)
        params = run_params(args, ap)
        cfg = RunConfig.from_dict(dict(params, out=_absolute(args.out)))
        out = out_dir(cfg)
        D.find_data(cfg.data, cfg.prof.data_folder)  # before a kernel starts
        if dist.launched():
            return _run_ddp(cfg, out)
        print(f"run {name_of(cfg)} -> {out}", flush=True)
        notebook.sigterm_interrupts()  # a kill stops the kernel too, as Ctrl-C does
        try:
            execute(params, out, name=name_of(cfg),
                    echo=lambda line: None if line.startswith(f"run {name_of(cfg)} ->") else print(line, flush=True))
        except KeyboardInterrupt:
            notebook.stop_all()
            print(f"stopped {name_of(cfg)}; it resumes from its last checkpoint when you run the same command again",
                  file=sys.stderr)
            return 130
        print(f"{name_of(cfg)} complete: {out / RunDir.METRICS}")
        return 0
    if args.cmd == "study":
        get_profile(args.profile)
        if args.seeds < 1:
            ap.error(f"--seeds must be 1 or more (seeds 0..N-1), got {args.seeds}")
        if args.jobs < 1:
            ap.error(f"--jobs must be 1 or more, got {args.jobs}")
        args.runs_dir, args.data = _absolute(args.runs_dir), _absolute(args.data)
        if args.status:
            print(format_progress(progress(args.profile, args.seeds, args.runs_dir), jobs=args.jobs))
            return 0
        if args.hours is not None and args.hours <= 0:
            ap.error(f"--hours must be > 0, got {args.hours}")
        try:
            outcome = run_study(args.profile, args.seeds, jobs=args.jobs, data=args.data, runs_dir=args.runs_dir,
                                hours=args.hours, price=lambda runs: seconds_left(runs, args.profile, args.runs_dir),
                                echo=lambda line: print(line, flush=True))
        except KeyboardInterrupt:
            return 130
        return 1 if any(v in ("failed", "blocked") for v in outcome.values()) else 0
    if args.cmd == "evaluate":
        folders = [RunDir(Path(r).resolve()) for r in args.runs]
        bad = [str(f.path) for f in folders if not f.is_complete()]
        if bad:
            print(f"not complete run folders: {', '.join(bad)}", file=sys.stderr)
            return 2
        for f in folders:
            cfg = RunConfig.from_dict(dict(f.metrics()["config"], out=str(f.path)))
            m = evaluate_more(f, args.protocol or row(cfg.net, cfg.train_scale).protocols)
            print(f"{f.name}: " + ", ".join(f"{k} {v['top1_err']:.2f}" for k, v in m["eval"].items()), flush=True)
        return 0
    if args.cmd == "bench":
        bench.BENCHES[args.what](**({"out": args.out} if args.what == "gpu" and args.out else {}))
        return 0
    if args.cmd == "data":
        if args.download:
            # torchvision knows Imagenette's address and checksum; needs internet access.
            from torchvision.datasets import Imagenette

            for size in ("160px", "320px"):  # cpu, cpu128 (and the gpu profile on Imagenette)
                for split in ("train", "val"):
                    Imagenette(args.root, split=split, size=size, download=True)
            print(f"Imagenette is in {args.root}/imagenette2-160 and -320 (set VGG_DATA to use it elsewhere)")
        for name, prof in PROFILES.items():
            try:
                print(f"images of the {name} profile: {D.find_data(None, prof.data_folder)}")
            except FileNotFoundError:
                if os.environ.get("VGG_DATA"):  # an explicit choice that is not there: the error
                    raise
                print(f"images of the {name} profile: none yet ({prof.data_folder})")
        return 0
    return 2


def _run_ddp(cfg: RunConfig, out: Path) -> int:
    """``vgg run`` under torchrun: every rank calls ``run_experiment`` in this process (no
    notebook: one per rank makes no sense, so the folder has no executed run_config.ipynb);
    rank 0 alone prints, writes the folder and evaluates."""
    dist.init(cfg.device)
    try:
        if dist.rank() == 0:
            print(f"run {name_of(cfg)} -> {out} on {dist.world()} ranks (DistributedDataParallel)", flush=True)
        try:
            run_experiment(cfg, progress=dist.rank() == 0)
        except KeyboardInterrupt:
            if dist.rank() == 0:
                print(f"stopped {name_of(cfg)}; it resumes from its last checkpoint when you run the same "
                      f"command again", file=sys.stderr)
            return 130
        if dist.rank() == 0:
            print(f"{name_of(cfg)} complete: {out / RunDir.METRICS}")
        return 0
    finally:
        dist.finish()


def _cli() -> int:
    """main() with bad input reported as one line (what was wrong, what is valid), no traceback."""
    try:
        return main()
    except (ValueError, TypeError, RuntimeError, FileNotFoundError) as err:
        print(f"python -m vgg: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a folder that cannot be written (read-only, full disk): say which
        where = f" {err.filename}" if err.filename else ""
        print(f"python -m vgg: error: cannot write{where}: {err.strerror or err}; nothing finished was lost "
              f"(a run resumes from its last checkpoint)", file=sys.stderr)
        return 2

