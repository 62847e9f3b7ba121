"""A reproduction of Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition" (ICLR 2015), at a scale two CPU cores can afford.

Files by layer, each importing only from the layers above it in this list:
``io``, ``profiles``, ``model``, ``stats`` (bottom); ``data`` (images, the paper's
transforms), ``train`` (Sect. 3.1), ``evaluate`` (Sect. 3.2, 4: the protocol registry);
``config`` (one typed source of run parameters); ``spec`` (the study as data: runs,
tables, claims, fusions); ``rundir`` (one run folder); ``run`` (one experiment); ``study``
(all of them). Beside the core: ``report`` (what the book reads), ``ops`` (progress,
benchmarks) and the CLI (``__main__``).
"""
from .model import NETS, build, describe, param_count, to_dense

__all__ = ["NETS", "build", "to_dense", "describe", "param_count"]
