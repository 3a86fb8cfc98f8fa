"""Test plugin: a strategy that raises every time, as a bug in a cell would (``--plugin always_fails``).

A broken input is refused before anything trains, so this is how a test makes a cell fail while it runs.
"""

from __future__ import annotations

from study.train import strategies


def _fail(data, spec, cfg, engine):  # type: ignore[no-untyped-def]
    raise RuntimeError(f"always_fails was asked to train on {data.dataset}")


if "always_fails" not in strategies.STRATEGIES:
    strategies.register_strategy(
        strategies.Strategy(name="always_fails", pretrained=False, recipe="raises", run=_fail, uses_backbone=False)
    )
