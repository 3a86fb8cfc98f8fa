"""The advisor fitted on a results source, for the commands that need one (recommend, rules, train).

Fitting is deterministic in its inputs, so a fitted model is kept in the cache folder (``advisor/``), keyed by
everything it depends on: the rows it is fitted on (every column), the code that fits it (the advisor package and
``study.analysis``) and the library versions. Asking again costs a file read, not the nested selection (about a
third of a warm ``advisor recommend --data-dir``). A missing, unreadable or read-only cache only costs the fit.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from advisor.data import load_results
from advisor.model import Advisor

CODE = [Path(__file__).resolve().parent, Path(__file__).resolve().parents[1] / "study" / "analysis"]


def _code_version() -> bytes:
    import numpy
    import sklearn

    digest = hashlib.sha256(f"{sklearn.__version__}|{numpy.__version__}|{pd.__version__}".encode())
    for folder in CODE:
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.digest()


def _frame_digest(frame: pd.DataFrame | None) -> bytes:
    if frame is None:
        return b"none"
    canon = frame.reindex(sorted(frame.columns), axis=1).astype(str)
    return hashlib.sha256(pd.util.hash_pandas_object(canon, index=False).to_numpy().tobytes()
                          + ",".join(canon.columns).encode()).digest()  # fmt: skip


def cached_fit(kind: str, fit: Callable[[], Any], *frames: pd.DataFrame | None) -> Any:
    """``fit()``, or the model it returned before for the same ``frames``, code and library versions."""
    from study import config
    from study.cache.json_files import write_quietly

    key = hashlib.sha256(kind.encode() + _code_version())
    for frame in frames:
        key.update(_frame_digest(frame))
    path = Path(config.cache_dir()) / "advisor" / f"{kind}-{key.hexdigest()[:32]}.pkl"
    if path.is_file():
        try:
            with path.open("rb") as f:
                return pickle.load(f)
        except Exception:  # noqa: BLE001 - an unreadable cache entry (truncated, older pickle) is refitted
            pass
    model = fit()
    write_quietly(path, pickle.dumps(model))
    return model


def load_fitted(source: str | None) -> tuple[Advisor, Any, Any, float]:
    """(fitted advisor, runs, similarity rows, seconds spent fitting or reading it) from a results folder, store URL
    or None."""
    from advisor.data import describe_source

    runs, similarity = load_results(source)
    t0 = time.perf_counter()
    where = pd.DataFrame({"source": [describe_source(runs)]})  # a fitted advisor records where its rows came from
    advisor = cached_fit("advisor", lambda: Advisor().fit(runs, similarity), runs, similarity, where)
    return advisor, runs, similarity, time.perf_counter() - t0
