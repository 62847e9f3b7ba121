"""The study: every run of the paper's Tables 3-6 plus B-5x5 (Sect. 4.1), as a plan.

Each planned run is one papermill execution of ``book/run_config.ipynb``. The paper's
initialisation chain (Sect. 3.1) orders them: an S = 384 net starts from the S = 256 net
of the same configuration (lr 1e-3), a jittered S in [256, 512] net from the S = 384 one.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlannedRun:
    net: str
    train_scale: str  # paper pixels: "256", "384" or "256-512"
    seed: int
    init_from: str | None = None  # name of the run whose weights start this one
    lr: float | None = None  # None: the config's default (0.01 from scratch)
    multi_crop: bool = False  # Table 5 needs the 150-crop evaluation
    tables: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return run_name(self.net, self.train_scale, self.seed)

    def params(self, profile: str) -> dict:
        """The notebook parameters that make this run."""
        p = dict(net=self.net, train_scale=self.train_scale, seed=self.seed, profile=profile)
        if self.init_from:
            p["init_from"] = f"runs/{profile}/{self.init_from}"
        if self.lr is not None:
            p["lr"] = self.lr
        if self.multi_crop:
            p["multi_crop"] = True
        return p


def run_name(net: str, train_scale: str, seed: int, variant: str | None = None) -> str:
    """``<net>-S<train_scale>[-<variant>]-s<seed>``, e.g. ``D-S256-512-s0`` (DESIGN.md)."""
    return f"{net}-S{train_scale}" + (f"-{variant}" if variant else "") + f"-s{seed}"


# Fine-tuning lr: Sect. 3.1 gives 1e-3 for S = 384 from S = 256; it does not say which lr
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


def plan(seeds: int | list[int] = 1) -> list[PlannedRun]:
    """Every run of the study for ``seeds`` (a count, or a list of seeds), parents first."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    runs = []
    for seed in seed_list:
        for net, scale, parent, tables, mc in _TABLE:
            runs.append(PlannedRun(
                net=net, train_scale=scale, seed=seed,
                init_from=run_name(net, parent, seed) if parent else None,
                lr=FINETUNE_LR if parent else None, multi_crop=mc, tables=tables))
    return runs
