"""Shared fixtures: a tiny real-JPEG image folder and a private decode cache per session."""
from __future__ import annotations

import pytest

from imagefolder import make_image_folder


def pytest_configure(config):
    # torchvision 0.29 deprecates its image codecs in favour of torchcodec, which this
    # project does not pin; the warning says nothing about our code.
    config.addinivalue_line(
        "filterwarnings", "ignore:The image decoding and encoding capabilities:DeprecationWarning")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """An ImageNet-layout folder: 3 classes, 6 train and 3 val JPEGs each."""
    return make_image_folder(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("vgg_cache")


@pytest.fixture(autouse=True)
def vgg_cache(_session_cache, monkeypatch):
    """Keep every test's decode cache out of the repository (and out of the user's cache)."""
    monkeypatch.setenv("VGG_CACHE", str(_session_cache))
    return _session_cache
