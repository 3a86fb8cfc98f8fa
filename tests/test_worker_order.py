"""Local workers walk the grid from their own shares (dataset boundaries), so each keeps its caches warm."""

from __future__ import annotations

from study.engine.executors import worker_order
from study.engine.grid import expand, get_grid


def test_each_worker_starts_at_its_own_dataset_and_still_sees_every_cell():
    cells, _ = expand(get_grid("quick"))
    orders = [worker_order(cells, i, 2) for i in range(2)]
    assert orders[0] == cells
    assert sorted(c.key for c in orders[1]) == sorted(c.key for c in cells)  # nothing lost, nothing twice
    start = cells.index(orders[1][0])
    assert 0 < start < len(cells) and cells[start].dataset != cells[start - 1].dataset
    assert orders[1] == cells[start:] + cells[:start]  # the same order, rotated


def test_one_worker_or_one_dataset_keeps_the_grid_order():
    cells, _ = expand(get_grid("smoke"))
    assert worker_order(cells, 0, 1) == cells
    single = [c for c in cells if c.dataset == cells[0].dataset]
    assert worker_order(single, 1, 2) == single
