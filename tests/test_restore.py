"""Exported parts load back into a store (``study.analysis.restore``): same rows, nothing overwritten, idempotent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from study.analysis import export, restore
from study.engine.store import ResultsStore, make_cell_key


def _cell(seed: int, n: int = 200) -> dict[str, Any]:
    return {"grid": "test", "dataset": "cats_and_dogs_filtered", "domain": "natural", "n_images": n,
            "strategy": "fine_tune_top", "backbone": "mobilenet_v2", "image_size": 64, "seed": seed}  # fmt: skip


def _result(acc: float) -> dict[str, Any]:
    return {"accuracy": acc, "degenerate": False, "trainable_params": 1281, "metrics": {"macro_f1": acc - 0.1},
            "curves": {"loss": [0.7, 0.5]}, "params": {"lr": 1e-3}, "provenance": {"commit": "abc"}}  # fmt: skip


def _filled(url: str, accs: dict[int, float], failed_seed: int | None = None) -> ResultsStore:
    store = ResultsStore(url)
    for seed, acc in accs.items():
        assert store.claim(_cell(seed))
        store.complete(make_cell_key(_cell(seed)), _result(acc))
    if failed_seed is not None:
        assert store.claim(_cell(failed_seed))
        store.fail(make_cell_key(_cell(failed_seed)), "boom")
    store.put_dataset("cats_and_dogs_filtered", domain="natural", similarity={"mobilenet_v2@64": {"fid": 1.5}})
    return store


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["id"]).sort_values("cell_key").reset_index(drop=True)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_restored_export_is_the_same_study(tmp_path: Path, fmt: str) -> None:
    with _filled(f"sqlite:///{tmp_path / 'a.db'}", {0: 0.81, 1: 0.83}, failed_seed=2) as source:
        export.export(source, tmp_path / "part", fmt)  # type: ignore[arg-type]
        want = _comparable(source.to_frame("complete"))
        want_sets = source.datasets_frame().drop(columns=["updated_at"])
    with ResultsStore(f"sqlite:///{tmp_path / 'b.db'}") as target:
        assert restore.restore(target, tmp_path / "part") == (2, 3, 1)  # the failed row is not a result
        got = _comparable(target.to_frame())
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
        pd.testing.assert_frame_equal(target.datasets_frame().drop(columns=["updated_at"]), want_sets)
        assert restore.restore(target, tmp_path / "part")[0] == 0  # twice: nothing new
        assert target.finished_keys() == set(want["cell_key"])  # a sweep into this store skips them


def test_rows_already_in_the_store_win(tmp_path: Path) -> None:
    with _filled(f"sqlite:///{tmp_path / 'a.db'}", {0: 0.81, 1: 0.83}) as source:
        export.export(source, tmp_path / "part")
    with _filled(f"sqlite:///{tmp_path / 'b.db'}", {0: 0.50}) as target:
        assert restore.restore(target, tmp_path / "part")[0] == 1
        accs = target.to_frame().set_index("seed")["accuracy"].to_dict()
    assert accs == {0: pytest.approx(0.50), 1: pytest.approx(0.83)}


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert restore.main([str(tmp_path / "nope"), "--store", url]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert restore.main([str(tmp_path / "empty"), "--store", url]) == 2
    assert "no runs.parquet" in capsys.readouterr().err
