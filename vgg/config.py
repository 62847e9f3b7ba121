"""One typed source of defaults for a run (principle 2).

``RunConfig`` holds every parameter of one experiment. The notebook's parameters, the
CLI's flags and the study plan all pass through ``RunConfig.from_dict``, which refuses
unknown keys (suggesting the closest one) and values of the wrong type, so a typo never
silently runs the default.
"""
from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from .datapath import PATHS
from .evaluate import BASE, MULTI_CROP, PROTOCOLS
from .io import ROOT
from .model import NETS, check_net
from .profiles import PROFILES, Profile, get_profile, parse_train_scale

# Where and how a run executes, not what it is: never part of a run's name or recipe.
RUNTIME_FIELDS = ("data", "device", "threads", "out", "protocols", "data_path", "workers", "compile")
# Parameters of older metrics.json files, read into today's fields (RunConfig.from_dict).
LEGACY = {"multi_crop": lambda v: {"protocols": list(BASE + (MULTI_CROP if v else ()))}}


@dataclass
class RunConfig:
    net: str = "A"  # a configuration of Table 1: A, A-LRN, B, C, D, E, B-5x5
    train_scale: str = "256"  # S in paper pixels: "256", "384" or jittered "256-512" (Sect. 3.1)
    seed: int = 0
    profile: str = "smoke"  # smoke (tests, minutes), cpu (the study), gpu (the paper itself)
    epochs: int | None = None  # cap on epochs; None: the profile's cap (scratch or fine-tune)
    lr: float = 0.01  # initial learning rate (Sect. 3.1); 1e-3 when fine-tuning from init_from
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int | None = None  # None: the profile's (the paper: 256)
    patience: int | None = None  # plateau rule (profiles without lr_steps): epochs without held-out gain before lr /= 10
    max_lr_drops: int = 3  # the paper divided the lr 3 times, then stopped (Sect. 3.1)
    holdout_frac: float = 0.05  # slice of each training class that monitors the schedule
    init: str | None = None  # "glorot" or "paper" (N(0, 0.01) + layers of a trained A); None: the profile's
    init_a: str | None = None  # run folder of a trained A, for init="paper"
    init_from: str | None = None  # run folder whose final weights start this run
    protocols: list[str] | None = None  # names of vgg.evaluate.PROTOCOLS; None: the run's row in vgg.spec
    data: str | None = None  # image folder; None: $VGG_DATA or the default places
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    threads: int | None = None  # torch CPU threads; None: all cores
    data_path: str = "auto"  # training images in "memory" (the decode cache), on the "device" (GPU), or "stream"ed (vgg.datapath)
    workers: int | None = None  # DataLoader processes of the stream path; None: the cores left to this rank
    compile: bool = False  # torch.compile the model (CUDA only; ~14% slower on this CPU)
    out: str | None = None  # the run folder; None: runs/<profile>/<run name>

    def __post_init__(self) -> None:
        self._check_types()
        check_net(self.net)
        parse_train_scale(self.train_scale)
        get_profile(self.profile)
        if self.init is not None:
            _choice("init", self.init, ("glorot", "paper"))
        _choice("device", self.device, ("auto", "cpu", "cuda"))
        _choice("data_path", self.data_path, PATHS)
        if self.seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {self.seed}")
        for name in ("epochs", "batch_size", "patience", "threads", "workers"):
            value = getattr(self, name)
            if value is not None and value < (0 if name in ("patience", "workers") else 1):
                raise ValueError(f"{name} must be a positive whole number, got {value}")
        if self.max_lr_drops < 0:
            raise ValueError(f"max_lr_drops must be >= 0, got {self.max_lr_drops}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 10):
            raise ValueError(f"lr must be a finite number in (0, 10], got {self.lr}")
        if not (math.isfinite(self.weight_decay) and 0 <= self.weight_decay < 1):
            raise ValueError(f"weight_decay must be a finite number in [0, 1), got {self.weight_decay}")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be a finite number in [0, 1), got {self.momentum}")
        if self.protocols is not None:
            unknown = [p for p in self.protocols if p not in PROTOCOLS]
            if unknown or not self.protocols:
                raise ValueError(f"protocols {self.protocols!r}: give one or more of {', '.join(PROTOCOLS)}")
        if not 0 < self.holdout_frac < 0.5:
            raise ValueError(f"holdout_frac must be in (0, 0.5), got {self.holdout_frac}")
        if self.patience is not None and self.lr_steps:
            raise ValueError(f"patience is for the plateau rule, but the {self.profile} profile trains on a "
                             f"fixed schedule (lr / 10 after epochs {', '.join(map(str, self.lr_steps))}); "
                             f"leave patience unset, or use a profile with the plateau rule (smoke, gpu)")
        if self.init_scheme == "paper" and not (self.init_a or self.init_from) and self.net not in self.prof.from_scratch:
            raise ValueError(f"init='paper' gives {self.net} layers of a trained net A (Sect. 3.1): set init_a "
                             f"to its run folder (at {self.profile}, {', '.join(self.prof.from_scratch)} start from N(0, 0.01) alone)")

    def _check_types(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value, hint = getattr(self, f.name), hints[f.name]
            allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
            if value is None and type(None) in allowed:
                continue
            # papermill turns `-p train_scale 256` into an int; a scale is text in our interface
            if str in allowed and isinstance(value, int) and not isinstance(value, bool) and f.name == "train_scale":
                value = str(value)
            if float in allowed and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if int in allowed and isinstance(value, float) and value.is_integer() and bool not in allowed:
                value = int(value)
            if any(typing.get_origin(t) is list for t in allowed) and isinstance(value, (list, tuple)):  # list[str]: a list of text
                value = list(value)
                if not all(isinstance(v, str) for v in value):
                    raise TypeError(f"{f.name} must be a list of names, got {value!r}")
            ok = any(isinstance(value, typing.get_origin(t) or t) and not (t is int and isinstance(value, bool))
                     for t in allowed if t is not type(None))
            if not ok:
                names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
                raise TypeError(f"{f.name} must be {names}, got {value!r} ({type(value).__name__})")
            setattr(self, f.name, value)

    @classmethod
    def from_dict(cls, params: dict) -> "RunConfig":
        """Build from notebook/CLI parameters; unknown keys raise with the closest valid one."""
        valid = [f.name for f in fields(cls)]
        params = dict(params)
        for old, new in LEGACY.items():
            if old in params:
                value = params.pop(old)
                for k, v in new(value).items():
                    params.setdefault(k, v)
        unknown = [k for k in params if k not in valid]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, valid, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(f"unknown run parameter(s) {', '.join(hints)}; valid: {', '.join(valid)}")
        return cls(**params)

    # --- derived values, never stored twice ---
    @property
    def prof(self) -> Profile:
        return PROFILES[self.profile]

    @property
    def init_scheme(self) -> str:
        """How a run from scratch starts: ``init``, else its profile's."""
        return self.init or self.prof.init

    @property
    def max_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return self.prof.max_epochs_finetune if self.init_from else self.prof.max_epochs

    @property
    def lr_steps(self) -> tuple[int, ...] | None:
        """Epochs after which the lr is divided by 10 (a fixed schedule), or None for the
        plateau rule; the profile's, for a run from scratch or a fine-tuning one."""
        return self.prof.lr_steps_finetune if self.init_from else self.prof.lr_steps

    def to_dict(self) -> dict:
        return asdict(self)


def resolve(path: str | Path | None) -> Path | None:
    """A path parameter: absolute as given, relative to the repository root otherwise, so
    ``init_from="runs/cpu/C-S256-s0"`` means the same from the shell, papermill and a
    notebook opened in book/."""
    if path is None:
        return None
    path = Path(path)
    return path if path.is_absolute() else ROOT / path


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} {value!r} is not valid; choose one of: {', '.join(valid)}")


DEFAULTS = {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}
__all__ = ["RunConfig", "DEFAULTS", "RUNTIME_FIELDS", "NETS", "resolve"]
