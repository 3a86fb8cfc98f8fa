"""Test environment: read ../shared in place (never copied), keep derived caches inside the repo."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
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


PLUGINS = REPO / "tests" / "plugins"


@contextlib.contextmanager
def plugins(*names: str):
    """Import test plugin modules (they register components), and unregister what they added afterwards, so other
    tests see the registries as they were."""
    import importlib

    from study.data.datasets import DATASETS
    from study.train.strategies import STRATEGIES
    from study.zoo.backbones import BACKBONES

    registries = (DATASETS, BACKBONES, STRATEGIES)
    before = [set(r) for r in registries]
    modules_before = set(sys.modules)
    sys.path.insert(0, str(PLUGINS))
    try:
        for name in names:
            importlib.import_module(name)
        yield
    finally:
        for registry, names_before in zip(registries, before, strict=True):
            for added in set(registry) - names_before:
                registry.unregister(added)
        for name in set(sys.modules) - modules_before:  # imported here (also by --plugin): importable afresh later
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(PLUGINS)):
                del sys.modules[name]
        sys.path.remove(str(PLUGINS))


@pytest.fixture(scope="module")
def tiny_components(datapack):
    """The tiny dataset and backbones of ``tests/plugins/tiny_components.py``, registered for one test module."""
    with plugins("tiny_components"):
        yield


def run_advisor(*argv: str) -> tuple[int, str, str]:
    """``advisor ARGV`` in this process: (exit status, stdout, stderr)."""
    import io

    from advisor.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def weights_dirs(keras_cache):
    """Where the tests' backbones find pretrained weights: ../shared/keras, converted ones in the test cache."""
    from study.config import WeightsDirs

    return WeightsDirs(keras_cache, Path(os.environ["TRANSFER_STUDY_CACHE"]))


@pytest.fixture(scope="session")
def data_dirs(datapack):
    return [datapack]


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory, datapack):
    """One real run of the smoke grid for the whole session: (store URL, the finished process, its folder).

    Several test files inspect real results (sweep, reports, advisor); running the grid once keeps CI short.
    """
    tmp = tmp_path_factory.mktemp("smoke")
    url = f"sqlite:///{tmp / 'study.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "study.run", "--grid", "smoke", "--store", url, "--log-dir", str(tmp / "logs")],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=os.environ.copy(),
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"the smoke grid failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return url, proc, tmp


def pytest_collection_modifyitems(config, items):
    """With ``pytest -n 2 --dist loadgroup`` (``make test``) a test module runs on one worker, so its module-scoped
    fixtures (trained models, swept stores, a Ray cluster) are built once; the modules that read the session's
    smoke store share one worker, so the smoke grid is swept once."""
    smoke = {item.module.__name__ for item in items if "smoke_store" in getattr(item, "fixturenames", ())}
    for item in items:
        module = item.module.__name__
        item.add_marker(pytest.mark.xdist_group("smoke-store" if module in smoke else module))
