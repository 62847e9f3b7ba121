"""Command line: ``python -m vgg run|study|reevaluate|dense-context|bench|data`` (see README.md)."""
from __future__ import annotations

import argparse
import sys

from .model import NETS
from .study import SEEDS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vgg", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="one experiment, through the papermill notebook")
    r.add_argument("net", choices=NETS)
    r.add_argument("--train-scale", default="256", help='S in paper pixels: "256", "384" or "256-512"')
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--profile", default="smoke", help="smoke, cpu or gpu")
    r.add_argument("--out", default=None, help="the run folder (default runs/<profile>/<run name>)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any other notebook parameter, e.g. -p epochs=5 -p init_from=runs/cpu/C-S256-s0")

    s = sub.add_parser("study", help="every run of the plan that is not complete yet")
    s.add_argument("--profile", default="cpu")
    s.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds 0..N-1 (default {SEEDS})")
    s.add_argument("--jobs", type=int, default=1, help="runs at once (one torch thread each when > 1)")
    s.add_argument("--data", default=None)
    s.add_argument("--runs-dir", default="runs")
    s.add_argument("--status", action="store_true", help="show where each planned run stands; run nothing")
    s.add_argument("--hours", type=float, default=None,
                   help="start only runs that, with the runs that start from them, fit in this many hours "
                        "(priced from the epochs on record); defer the others")

    e = sub.add_parser("reevaluate", help="evaluate finished runs again under this code's protocols")
    e.add_argument("runs", nargs="*", help="run folders (default: every run of --profile evaluated "
                                           "under an older protocol)")
    e.add_argument("--profile", default="cpu")
    e.add_argument("--runs-dir", default="runs")

    c = sub.add_parser("dense-context", help="score each dense window in the dense pass and as a crop "
                                             "(why dense evaluation loses to crops at a small scale)")
    c.add_argument("runs", nargs="+", help="finished run folders (with their checkpoints)")
    c.add_argument("--q", type=int, default=None, help="test scale in paper pixels (default the run's single Q)")
    c.add_argument("--every", type=int, default=1, help="every n-th validation image (default all)")

    b = sub.add_parser("bench", help="speed benchmarks (not tests)")
    b.add_argument("what", choices=["data", "train", "eval", "lrn"])

    d = sub.add_parser("data", help="where the images are; --download fetches Imagenette")
    d.add_argument("--download", action="store_true")
    d.add_argument("--root", default="data")

    args = ap.parse_args(argv)
    if args.cmd == "run":
        import ast

        from .config import RunConfig
        from .study import execute, plan

        params = dict(net=args.net, train_scale=args.train_scale, seed=args.seed, profile=args.profile)
        # A run of the study plan gets the plan's parameters (init chain, lr, multi-crop),
        # so this command makes exactly the run `make study` would; -p overrides them.
        planned = [r for r in plan([args.seed]) if (r.net, r.train_scale) == (args.net, args.train_scale)]
        if planned:
            params = planned[0].params(args.profile)
        for item in args.param:
            key, sep, value = item.partition("=")
            if not sep:
                ap.error(f"-p takes NAME=VALUE, got {item!r}")
            try:
                params[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                params[key] = value
        cfg = RunConfig.from_dict(dict(params, out=args.out))
        out = cfg.out_dir  # a relative --out means the repository root, as in the notebook
        print(f"run {cfg.name} -> {out}")
        execute(params, out, log_output=True)
        return 0
    if args.cmd == "study":
        from .study import format_progress, progress, run_study

        if args.status:
            print(format_progress(progress(args.profile, args.seeds, args.runs_dir), jobs=args.jobs))
            return 0
        if args.hours is not None and args.hours <= 0:
            ap.error(f"--hours must be > 0, got {args.hours}")
        outcome = run_study(args.profile, args.seeds, jobs=args.jobs, data=args.data, runs_dir=args.runs_dir,
                            hours=args.hours)
        return 1 if any(v in ("failed", "blocked") for v in outcome.values()) else 0
    if args.cmd == "reevaluate":
        from pathlib import Path

        from .evaluate import EVAL_VERSION
        from .io import ROOT
        from .run import needs_reevaluation, reevaluate

        if args.runs:
            folders = [Path(r) for r in args.runs]
            bad = [str(f) for f in folders if not (f / "metrics.json").exists()]
            if bad:
                print(f"not run folders (no metrics.json): {', '.join(bad)}", file=sys.stderr)
                return 2
        else:
            base = Path(args.runs_dir) if Path(args.runs_dir).is_absolute() else ROOT / args.runs_dir
            folders = sorted(f for f in (base / args.profile).glob("*") if needs_reevaluation(f))
            print(f"{len(folders)} run(s) of {base / args.profile} evaluated under a protocol older than "
                  f"version {EVAL_VERSION}")
        for f in folders:
            m = reevaluate(f)
            print(f"{f.name}: " + ", ".join(f"{k} {v['top1_err']:.2f}" for k, v in m["eval"].items()), flush=True)
        return 0
    if args.cmd == "dense-context":
        from pathlib import Path

        from .run import measure_dense_context

        bad = [r for r in args.runs if not (Path(r) / "metrics.json").exists()]
        if bad:
            print(f"not run folders (no metrics.json): {', '.join(bad)}", file=sys.stderr)
            return 2
        for r in args.runs:
            rec = measure_dense_context(r, q=args.q, every=args.every)
            print(f"{rec['run']} at Q={rec['q']}: " + ", ".join(f"{k} {v:.1f}" for k, v in rec["top1_err"].items()
                                                         if not k.startswith("n_")), flush=True)
        return 0
    if args.cmd == "bench":
        from .bench import BENCHES

        BENCHES[args.what]()
        return 0
    if args.cmd == "data":
        from . import data as D

        if args.download:
            # torchvision knows Imagenette's address and checksum; needs internet access.
            from torchvision.datasets import Imagenette

            for split in ("train", "val"):
                Imagenette(args.root, split=split, size="160px", download=True)
            print(f"Imagenette is in {args.root}/imagenette2-160 (set VGG_DATA to use it elsewhere)")
        print(f"images: {D.find_data()}")
        return 0
    return 2


def _cli() -> int:
    """main() with bad input reported as one line (what was wrong, what is valid), no traceback."""
    try:
        return main()
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"python -m vgg: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_cli())
