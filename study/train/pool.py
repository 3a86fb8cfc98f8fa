"""Compiled Keras models kept alive across a worker's cells: build and trace once per architecture.

Building a Keras model and tracing its train and predict steps costs seconds (MobileNetV2 fine-tuned at 64 px:
~1 s to build and ~5 s to trace on 2 CPU cores, ``python -m bench.profile_cells``), while a small cell trains in
less. Cells of one architecture (recipe, backbone, input shape, classes, and the hyper-parameters that tracing bakes
into the graph: dropout rate and L2 factor) therefore share one compiled model per process. Before each use the
caller sets every variable to what a freshly built model would hold (pretrained weights, a fresh head, seeded
initial values — dropout's seed state included), and the optimiser's state is zeroed and its learning rate set, so a
reused model trains exactly as a new one would: bit-identical on the same threads (``tests/test_pool.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from study.train.training import compile_classifier

MAX_MODELS = 6  # a worker's cells come grouped by dataset and backbone: a few architectures are live at a time



@dataclass
class Pooled:
    """A compiled model and what its users need to reset it."""

    model: Any
    backbone: Any = None  # a pretrained sub-model, restored to its weights as built before each use (``initial``)
    head: Any = None  # the new head, whose values the caller copies in from the head phase
    initial: list[np.ndarray] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.backbone is not None:
            self.initial = snapshot(self.backbone.variables)


_POOL: OrderedDict[tuple, Pooled] = OrderedDict()


def compiled(key: tuple, build: Callable[[], Pooled], lr: float) -> Pooled:
    """The pooled model for ``key`` (built and compiled on first use), optimiser zeroed, learning rate ``lr``.

    The caller must then set the model's variables (``assign``): a reused model still holds the last cell's.
    """
    pooled = _POOL.get(key)
    if pooled is None:
        pooled = build()
        compile_classifier(pooled.model, lr)
        _POOL[key] = pooled
        while len(_POOL) > MAX_MODELS:
            _POOL.popitem(last=False)
    _POOL.move_to_end(key)
    optimizer = pooled.model.optimizer
    for v in optimizer.variables:  # iteration count, moments: a fresh Adam's state
        v.assign(np.zeros(v.shape, dtype=v.dtype))
    optimizer.learning_rate.assign(lr)
    return pooled


def assign(variables: Sequence[Any], values: Sequence[Any]) -> None:
    """Set ``variables`` to ``values`` (arrays or variables of an identically built model, in the same order)."""
    if len(variables) != len(values):
        raise ValueError(f"{len(variables)} variables but {len(values)} values: not the same architecture")
    for var, value in zip(variables, values, strict=True):
        var.assign(value.numpy() if hasattr(value, "numpy") else value)


def snapshot(variables: Sequence[Any]) -> list[np.ndarray]:
    """The variables' current values, copied (a pooled model's weights change with its next cell)."""
    return [np.array(v.numpy(), copy=True) for v in variables]


def clear() -> None:
    """Forget every pooled model (tests; a process that changes thread settings)."""
    _POOL.clear()
