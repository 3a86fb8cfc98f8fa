"""The advisor fitted on a results source, for the commands that need one (recommend, rules, train)."""

from __future__ import annotations

import time
from typing import Any

from advisor.data import load_results
from advisor.model import Advisor


def load_fitted(source: str | None) -> tuple[Advisor, Any, Any, float]:
    """(fitted advisor, runs, similarity rows, seconds spent fitting) from a results folder, store URL or None."""
    runs, similarity = load_results(source)
    t0 = time.perf_counter()
    advisor = Advisor().fit(runs, similarity)
    return advisor, runs, similarity, time.perf_counter() - t0
