"""Test plugin: a strategy that, the first time any process runs it, waits (as a long training would) until it is
interrupted, then behaves as ``linear_probe``.

Imported through ``--plugin pause_once`` so that a sweep surely has a cell in flight when the test sends it SIGINT or
SIGTERM. The marker file ``paused`` in ``$STUDY_TEST_PAUSE_DIR`` says the pause has begun (and never comes again).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from study.train import strategies


def _pause_once(data, spec, cfg, engine):  # type: ignore[no-untyped-def]
    marker = Path(os.environ["STUDY_TEST_PAUSE_DIR"]) / "paused"
    try:
        with open(marker, "x") as f:  # exactly one process, once
            f.write(str(os.getpid()))
    except FileExistsError:
        return strategies.run_linear_probe(data, spec, cfg, engine)
    time.sleep(600)  # the test interrupts this
    raise AssertionError("pause_once was never interrupted")


if "pause_once" not in strategies.STRATEGIES:
    strategies.register_strategy(
        strategies.Strategy(
            name="pause_once", pretrained=True, recipe="linear_probe after a pause", run=_pause_once,
            params=("linear_c",), freeze_level=3,
        )  # fmt: skip
    )
