"""Run one cell: data subset -> tuned strategy -> metrics, costs and provenance as one result row.

The runner is the only place that turns a ``Cell`` (plain data) into training calls, and a ``FitResult`` into
the store's row. It keeps per-process caches (decoded datasets, the activation cache) so consecutive cells of
one dataset share their work. A model that comes out degenerate (collapsed to one class, or no better than
the majority class) is retried with the next-best tuning trial or another training seed; if it stays
degenerate the row is kept and labelled, and the analysis layers exclude it.
"""

from __future__ import annotations

import platform
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from study.cache.features import FeatureEngine
from study.config import WeightsDirs, cpu_count
from study.data import catalog as datasets
from study.data.cell_data import CellData, source_target_data
from study.data.loaders import LoadedDataset
from study.data.sampling import cap_test, class_balance, train_val_split
from study.engine.grid import Cell
from study.errors import StudyError
from study.train.strategies import get_strategy
from study.train.training import FitResult, TrainConfig, classification_metrics, count_params, cpu_latency_ms
from study.train.tuning import tune
from study.zoo.backbones import get_backbone, resolve_weights, weights_checksum


@dataclass
class TrainedCell:
    """A finished cell: its result row and what produced it (the model is ``result.model()``)."""

    cell: Cell
    row: dict[str, Any]
    result: FitResult
    data: CellData
    config: TrainConfig


class CellRunner:
    """Runs cells in this process, sharing decoded datasets and cached activations between them."""

    def __init__(
        self,
        cache_dir: Path,
        data_dirs: list[Path],
        weights: WeightsDirs,
        tuning_storage: str | None = None,
        measure_latency: bool = True,
        keep_datasets: int = 2,
    ) -> None:
        self.engine = FeatureEngine(cache_dir, weights)
        self.cache_dir = Path(cache_dir)
        self.data_dirs = data_dirs
        self.tuning_storage = tuning_storage
        self.measure_latency = measure_latency
        self._datasets: OrderedDict[tuple[str, int], LoadedDataset] = OrderedDict()
        self._keep = keep_datasets
        self._figures: dict[tuple, tuple[int, float | None, float | None]] = {}

    def dataset(self, name: str, image_size: int) -> LoadedDataset:
        key = (name, image_size)
        if key not in self._datasets:
            self._datasets[key] = datasets.load(name, image_size, self.data_dirs, self.cache_dir)
            while len(self._datasets) > self._keep:
                self._datasets.popitem(last=False)
        self._datasets.move_to_end(key)
        return self._datasets[key]

    def cell_data(self, cell: Cell) -> CellData:
        if cell.source is not None:  # domain adaptation: the target's cell with the source's nested in it
            return source_target_data(
                self.dataset(cell.source, cell.image_size), self.dataset(cell.dataset, cell.image_size),
                cell.image_size, cell.n_images, cell.n_target_labels or 0, cell.seed, cell.max_test,
            )  # fmt: skip
        ds = self.dataset(cell.dataset, cell.image_size)
        train_idx, val_idx = train_val_split(ds.pool.labels, cell.n_images, cell.seed, dataset=cell.dataset,
                                             groups=ds.pool.groups)
        test_idx = cap_test(ds.test.labels, cell.max_test, seed=0)
        return CellData(
            ds.name, ds.domain, list(ds.class_names), ds.source_checksum, cell.image_size, ds.pool, ds.test,
            train_idx, val_idx, test_idx,
        )  # fmt: skip

    def run(self, cell: Cell) -> dict[str, Any]:
        """Train, tune and evaluate one cell; returns the result row (the store's ``complete`` payload).

        A cell with ``deploy`` also gets ``metrics["deploy"]``: its deployable model's Keras and TFLite
        figures (``study.train.deploy.deployment_metrics``; int8 calibrated on the cell's training images).
        """
        trained = self.train(cell)
        if cell.deploy:
            started = time.perf_counter()
            deploy = self.deployment(trained)
            deploy["seconds"] = time.perf_counter() - started  # not in wall_seconds: --dry-run learns it apart
            trained.row["metrics"]["deploy"] = deploy
        return trained.row

    def deployment(self, trained: TrainedCell, out_dir: Path | None = None) -> dict[str, Any]:
        """``study.train.deploy.deployment_metrics`` of a trained cell's model on its test subset."""
        from study.train.deploy import deployment_metrics

        data = trained.data
        model = trained.result.model()
        if model is None:
            raise StudyError(f"strategy {trained.cell.strategy!r} builds no deployable model; deploy needs one")
        return deployment_metrics(model, data.test.images[data.test_idx], data.y_test, data.image_size,
                                  data.pool.images[data.train_idx], out_dir)  # fmt: skip

    def train(self, cell: Cell) -> TrainedCell:
        """``run`` without the deployment figures, keeping the trained model and the cell's data."""
        t_start = time.perf_counter()
        strategy = get_strategy(cell.strategy)
        spec = get_backbone(cell.backbone) if cell.backbone is not None else None
        data = self.cell_data(cell)
        stats0 = (self.engine.cache.stats.computed_rows, self.engine.cache.stats.hit_rows)
        extract0 = self.engine.cache.stats.extract_seconds
        base = TrainConfig(epochs=cell.epochs, seed=cell.seed, augment=cell.augment)
        outcome = tune(f"tune:{cell.key}", strategy, data, spec, self.engine, base, cell.trials, self.tuning_storage)
        params = outcome.params
        result = outcome.result or strategy.run(data, spec, replace(base, **params), self.engine)
        metrics = classification_metrics(data.y_test, result.test_proba, data.n_classes)

        retries, train_seed = 0, cell.seed
        candidates = outcome.ranked_params[1:]
        while metrics["degenerate"] and retries < cell.retries:
            retries += 1
            if candidates:
                params = candidates.pop(0)
            else:
                train_seed = (cell.seed + 1000 * retries) % 2**32  # seeds are 32-bit (grid.MAX_SEED)
            cfg = replace(base, seed=train_seed, **params)
            result = strategy.run(data, spec, cfg, self.engine)
            metrics = classification_metrics(data.y_test, result.test_proba, data.n_classes)

        cfg = replace(base, seed=train_seed, **params)
        row = self._row(cell, data, spec, strategy.uses_backbone, cfg, result, metrics, outcome, retries,
                        stats0, extract0, t_start)  # fmt: skip
        return TrainedCell(cell, row, result, data, cfg)

    def _model_figures(
        self, cell: Cell, spec: Any, uses_backbone: bool, n_classes: int, result: FitResult
    ) -> tuple[int, float | None, float | None]:
        """(total parameters, MB, CPU latency) of the deployable model: properties of its architecture, so the
        model is built once per (strategy, backbone, size, classes) in this process, not once per cell."""
        key = (cell.strategy, spec.name if uses_backbone else None, cell.image_size, n_classes)
        if key not in self._figures:
            model = result.model()
            if model is None:
                self._figures[key] = (result.trainable_params, None, None)
            else:
                mb = float(sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in model.weights) / 1e6)
                latency = None
                if self.measure_latency:
                    arch = (cell.strategy if not uses_backbone else "backbone",
                            spec.name if uses_backbone else "small_cnn")  # fmt: skip
                    latency = cpu_latency_ms(model, cell.image_size, (*arch, cell.image_size, n_classes))
                self._figures[key] = (count_params(model)[1], mb, latency)
        return self._figures[key]

    def _row(
        self, cell: Cell, data: CellData, spec: Any, uses_backbone: bool, cfg: TrainConfig, result: FitResult,
        metrics: dict[str, Any], outcome: Any, retries: int, stats0: tuple[int, int], extract0: float,
        t_start: float,
    ) -> dict[str, Any]:  # fmt: skip
        total, model_mb, latency = self._model_figures(cell, spec, uses_backbone, data.n_classes, result)
        info = describe_dataset(cell.dataset)
        val = classification_metrics(data.y_select, result.val_proba, data.n_classes)
        stats = self.engine.cache.stats
        weights_sha = (
            weights_checksum(resolve_weights(spec, self.engine.weights))
            if uses_backbone and get_strategy(cell.strategy).pretrained
            else None
        )
        return {
            "domain": data.domain,
            **{k: metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss")},
            "majority_share": metrics["majority_share"],
            "degenerate": metrics["degenerate"],
            "extract_seconds": stats.extract_seconds - extract0,
            "train_seconds": result.timings["train_seconds"],
            "eval_seconds": result.timings["eval_seconds"],
            "trainable_params": result.trainable_params,
            "total_params": total,
            "model_mb": model_mb,
            "latency_ms": latency,
            "metrics": {
                "correct": metrics["correct"],
                "n_test": metrics["n_test"],
                "n_classes": data.n_classes,
                "top_prediction_share": metrics["top_prediction_share"],
                "predicted_classes": metrics["predicted_classes"],
                "val_accuracy": val["accuracy"],
                "val_balanced_accuracy": val["balanced_accuracy"],
                "val_log_loss": val["log_loss"],
                "n_train": int(len(data.train_idx)),
                "n_val": int(len(data.val_idx)),
                "train_balance": class_balance(data.y_train, data.n_classes),
                "pool_majority_share": class_balance(data.pool.labels, data.n_classes)["majority_share"],
                "base_dataset": info.base,
                "shift": info.shift,
                "shift_level": info.shift_level,
                "trials_run": outcome.trials_run,
                "trials_pruned": outcome.trials_pruned,
                "best_val_score": outcome.best_value,
                "degenerate_retries": retries,
                "views": result.info.get("views", 1),
                "freeze_point": result.info.get("freeze_point"),
                "top_k": result.info.get("top_k"),
                "adaptation": result.info.get("adaptation"),  # a pair cell's source/target counts and schedule
                "cache_rows_computed": stats.computed_rows - stats0[0],
                "cache_rows_hit": stats.hit_rows - stats0[1],
                "wall_seconds": time.perf_counter() - t_start,
            },
            "curves": result.curves,
            "params": cfg.to_dict(),
            "provenance": provenance(data.fingerprint, weights_sha),
        }


def describe_dataset(name: str) -> datasets.DatasetInfo:
    return datasets.describe(name)


def provenance(data_checksum: str, weights_sha256: str | None) -> dict[str, Any]:
    """Software versions, machine and content checksums: enough to tell whether two rows are comparable."""
    import keras
    import tensorflow as tf

    import study

    return {
        "study": study.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "machine": platform.machine(),
        "cpus": cpu_count(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "data_checksum": data_checksum,
        "weights_sha256": weights_sha256,
    }
