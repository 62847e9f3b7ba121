"""Benchmarks: ``python -m vgg bench data|train|eval``. Speed lives here, never in tests.

Timings drift +-20% between runs on a shared machine, so each benchmark compares its
variants side by side in one process and reports medians of several repeats.
"""
from __future__ import annotations


def bench_data(args=None) -> dict:
    """Images/s of vgg.data's pipeline vs a textbook torchvision one (Imagenette, cpu profile)."""
    raise NotImplementedError


def bench_train(args=None) -> dict:
    """Training images/s and model-FLOP utilisation for A and D at the cpu profile."""
    raise NotImplementedError


def bench_eval(args=None) -> dict:
    """Images/s of dense and multi-crop evaluation at the cpu profile."""
    raise NotImplementedError


BENCHES = {"data": bench_data, "train": bench_train, "eval": bench_eval}
