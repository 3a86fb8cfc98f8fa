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

    Several test files inspect real results (sweep, reports, advisor); running the grid once keeps CI short. Under
    ``pytest -n 2`` (``make test``) the workers share it: the first one to ask runs the grid, the other waits for it
    (a lock in the session's shared temporary folder).
    """
    import fcntl
    import json

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # .../pytest-N: this session's folder, common to its workers
    tmp = shared / "smoke-store"
    url = f"sqlite:///{tmp / 'study.db'}"
    with open(shared / "smoke-store.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = tmp / "process.json"
        if not record.exists():
            tmp.mkdir(exist_ok=True)
            args = [sys.executable, "-m", "study.run", "--grid", "smoke", "--store", url,
                    "--log-dir", str(tmp / "logs")]  # fmt: skip
            done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900, env=os.environ.copy())
            record.write_text(json.dumps([done.args, done.returncode, done.stdout, done.stderr]))
        proc = subprocess.CompletedProcess(*json.loads(record.read_text()))
    if proc.returncode != 0:
        pytest.fail(f"the smoke grid failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return url, proc, tmp

