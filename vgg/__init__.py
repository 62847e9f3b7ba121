"""A reproduction of Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition" (ICLR 2015), at a scale two CPU cores can afford.

Files by role: ``model`` (Table 1 and the dense form), ``profiles`` (paper pixels ->
real pixels), ``config`` (one typed source of run parameters), ``data`` (images, the
paper's transforms), ``train`` (Sect. 3.1), ``evaluate`` (Sect. 3.2, 4.1-4.4),
``stats`` (confidence intervals), ``run`` (one experiment), ``study`` (all of them),
``results`` (reading runs/ for the book), ``bench`` (speed).
"""
from .model import NETS, build, describe, param_count, to_dense

__all__ = ["NETS", "build", "to_dense", "describe", "param_count"]
