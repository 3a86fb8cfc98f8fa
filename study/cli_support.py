"""Quiet, conventional command lines: TensorFlow's start-up chatter is hidden unless ``--verbose`` / ``-v``.

TensorFlow 2.21 writes its C++ start-up lines ("oneDNN custom operations are on", "Could not find cuda drivers",
"failed call to cuInit") straight to file descriptor 2 before absl logging is initialised, so
``TF_CPP_MIN_LOG_LEVEL`` alone does not hide them. Every CLI calls ``quiet_tensorflow(verbose)`` first thing:
quiet, it sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless the environment already sets it) and installs an import hook
that runs ``import tensorflow`` (and the device probe that prints the cuInit line) with descriptor 2 pointed at a
temporary file. The captured text is dropped when the import succeeds and written back when it fails, so a
broken installation still explains itself. TensorFlow is never imported early: a command that does not need it
stays fast. ``QUIET_ENV`` carries the choice to spawned worker processes (``study/__init__.py`` re-installs the
hook there). Verbose, TensorFlow logs as it always did (``TF_CPP_MIN_LOG_LEVEL=0``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

QUIET_ENV = "TRANSFER_STUDY_QUIET_TF"
"""Set to ``1`` by ``quiet_tensorflow(False)``; spawned workers inherit it and install the hook too."""
VERBOSE_HELP = "show TensorFlow's own start-up and log lines (hidden by default)"


def add_verbose_flag(parser: argparse.ArgumentParser, default: Any = False) -> None:
    """``-v`` / ``--verbose`` on ``parser`` (pass ``default=argparse.SUPPRESS`` on sub-commands)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help=VERBOSE_HELP)


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hide TensorFlow's start-up noise in this process and its spawned workers, or (verbose) restore its logging."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        os.environ.pop(QUIET_ENV, None)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietImport)]
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ[QUIET_ENV] = "1"
    install_hook()


def install_hook() -> None:
    """Make the first ``import tensorflow`` of this process quiet (no-op if TensorFlow is already imported)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImport())


@contextlib.contextmanager
def captured_stderr() -> Iterator[Any]:
    """File descriptor 2 (what C++ libraries write to) redirected to a temporary file, yielded for reading."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Wraps TensorFlow's own loader: executes the package with descriptor 2 captured, then hands the loader back."""

    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.real.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with captured_stderr() as sink:
            try:
                self.real.exec_module(module)  # type: ignore[attr-defined]
            except BaseException:
                sink.seek(0)
                os.write(2, sink.read())
                raise
            finally:
                module.__loader__ = self.real
                if module.__spec__ is not None:
                    module.__spec__.loader = self.real
            with contextlib.suppress(Exception):
                module.config.list_physical_devices()  # the cuInit probe prints here, once per process
        with contextlib.suppress(Exception):
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        with contextlib.suppress(Exception):
            module.get_logger().setLevel("ERROR")


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: only wraps the loader of the top-level ``tensorflow`` package, then steps aside."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec
