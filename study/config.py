"""Where things live on disk, read once from the environment, and how many CPUs this process may use.

Only the entry points call these; lower layers receive paths as arguments (benchopt's rule: flags and
environment become plain values at the edge).

- ``TRANSFER_STUDY_DATA``: one or more data directories (``os.pathsep``-separated) holding datasets in
  their distributed layouts, e.g. ``../shared/datapack``. Downloads go to the first writable one.
- ``TRANSFER_STUDY_CACHE``: decoded images and cached activations (safe to delete; rebuilt on demand).
- ``KERAS_HOME``: Keras' own cache; ImageNet weights are looked up in ``$KERAS_HOME/models``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path(os.path.expanduser("~")) / ".cache" / "transfer-study"


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask: a container or ``taskset`` may allow fewer than exist)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def data_dirs() -> list[Path]:
    """Directories searched for datasets, in order."""
    raw = os.environ.get("TRANSFER_STUDY_DATA", "")
    dirs = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
    return dirs or [DEFAULT_HOME / "data"]


def cache_dir() -> Path:
    """Root of derived, rebuildable files (decoded images, activation cache)."""
    return Path(os.environ.get("TRANSFER_STUDY_CACHE", DEFAULT_HOME / "cache")).expanduser()


@dataclass(frozen=True)
class WeightsDirs:
    """Where pretrained weights are found: Keras' cache (``keras_home/models``) and the study's own cache, where
    weights the study converts itself are written when the Keras cache is read-only (as ``../shared/keras`` is).

    Plain data: the entry points make one (``weights_dirs``); the layers below receive it and read no environment.
    """

    keras_home: Path
    cache_dir: Path


def weights_dirs() -> WeightsDirs:
    """The environment's ``WeightsDirs`` (``KERAS_HOME``, ``TRANSFER_STUDY_CACHE``): for entry points only."""
    return WeightsDirs(keras_home(), cache_dir())


def keras_home() -> Path:
    """Keras' cache directory (``$KERAS_HOME`` or ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME", Path("~/.keras").expanduser())).expanduser()


def check_writable(folder: Path, what: str, fix: str) -> None:
    """Fail early, in one line, when ``folder`` (or the nearest existing parent it would be made in) is not writable.

    Checked at the entry points, before anything slow, so a long run never dies at its last step.
    """
    from study.errors import StudyError

    probe = Path(folder).expanduser()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise StudyError(f"{what} {folder} is not a folder ({probe} is a file); {fix}")
    try:  # a real write: os.access says yes to root on a read-only folder, and knows nothing of read-only mounts
        import tempfile

        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StudyError(f"{what} {folder} is not writable ({probe}: {exc.strerror}); {fix}") from None
