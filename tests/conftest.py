"""Test environment: read ../shared in place (never copied), keep derived caches inside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_STUDY_SHARED", REPO.parent / "shared")).resolve()
DATAPACK = SHARED / "datapack"
KERAS_CACHE = SHARED / "keras"

os.environ.setdefault("TRANSFER_STUDY_DATA", str(DATAPACK))
os.environ.setdefault("KERAS_HOME", str(KERAS_CACHE))
os.environ.setdefault("TRANSFER_STUDY_CACHE", str(REPO / ".cache" / "test"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _need_shared() -> None:
    if not DATAPACK.is_dir():
        pytest.fail(f"the data pack is missing at {DATAPACK}; tests read ../shared beside the checkout")


@pytest.fixture(scope="session")
def datapack() -> Path:
    _need_shared()
    return DATAPACK


@pytest.fixture(scope="session")
def keras_cache() -> Path:
    _need_shared()
    return KERAS_CACHE
