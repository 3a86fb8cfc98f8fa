"""Test plugin: a strategy whose worker process dies (SIGKILL) the first time it runs, then behaves.

Imported in executor workers through ``--plugin die_once`` / ``RunnerConfig.plugins`` to show that a worker
killed mid-cell is retried and its claim taken over. The marker file lives in ``$STUDY_TEST_DIE_DIR``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from study.train import strategies


def _die_once(data, spec, cfg, engine):  # type: ignore[no-untyped-def]
    marker = Path(os.environ["STUDY_TEST_DIE_DIR"]) / f"died-{data.dataset}-{len(data.train_idx)}"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return strategies.run_linear_probe(data, spec, cfg, engine)


strategies.register_strategy(
    strategies.Strategy(name="die_once", run=_die_once, recipe="linear_probe after one crash", pretrained=True,
                        params=("linear_c",), freeze_level=3)
)
