"""Deployment figures of a trained model: Keras and TensorFlow Lite (float32, float16, int8) size, latency, accuracy.

``deployment_metrics`` is used by ``advisor train`` (which keeps the files it writes) and by the sweep for a grid
with ``deploy = true`` (``study.engine.cell.CellRunner`` stores the result as ``metrics["deploy"]``). The model is a
deployable one (``study.train.strategies.deployable``): raw RGB images (float 0..255, H x W x 3) in, class
probabilities out, the backbone's preprocessing inside as the serialisable ``study.zoo.preprocessing.Preprocess``.

TFLite conversion goes through a SavedModel with a fixed batch-1 signature (Keras 3: ``model.export`` then
``TFLiteConverter.from_saved_model``; a concrete function of a Keras 3 model keeps its weights as unfrozen
resource variables, which an interpreter cannot read). Variants:

- ``float32``: the graph as is;
- ``float16``: weights stored as float16 (``Optimize.DEFAULT`` + ``supported_types=[float16]``), computed in float;
- ``int8``: full-integer quantisation (``TFLITE_BUILTINS_INT8`` only: conversion fails rather than fall back
  to float ops), activations calibrated on a representative sample of *training* images (never test images).
  Input and output stay **float32** (raw 0..255 pixels in, probabilities out, one quantize op after the input
  and one dequantize op before the output), so every variant is called the same way and probabilities keep
  their resolution (a uint8 output would round them to 1/256).

Accuracy is measured on the test images with single-image invokes (the batch-1 signature), latency as the
median of single-image calls after warm-up, on ``threads`` CPU threads (TFLite) and TensorFlow's own thread
pool (Keras); sizes are file sizes in MB (10^6 bytes).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from study.config import cpu_count

VARIANTS = ("float32", "float16", "int8")
REPRESENTATIVE_IMAGES = 100
"""Training images used to calibrate int8 activations (TFLite's guide: ~100-500 samples)."""
LATENCY_RUNS = 30
INT8_IO = "float32"
"""Input/output type of the int8 model (the layers inside are int8): see the module doc."""


def representative_sample(images: np.ndarray, n: int = REPRESENTATIVE_IMAGES, seed: int = 0) -> np.ndarray:
    """A fixed random sample of at most ``n`` images (pass training images: calibration must not see the test)."""
    if len(images) <= n:
        return images
    idx = np.sort(np.random.default_rng(seed).choice(len(images), size=n, replace=False))
    return images[idx]


def export_saved_model(model: Any, image_size: int, path: Path) -> Path:
    """The model as a SavedModel with one batch-1 float32 signature (the TFLite converter's input)."""
    import tensorflow as tf

    spec = tf.TensorSpec([1, image_size, image_size, 3], tf.float32, name="image")
    model.export(str(path), format="tf_saved_model", verbose=False, input_signature=[spec])
    return path


def convert_tflite(saved_model: Path, variant: str, representative: np.ndarray | None = None) -> bytes:
    """One TFLite flatbuffer of ``variant`` (``float32``, ``float16`` or ``int8``) from a SavedModel."""
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; known: {', '.join(VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if representative is None or not len(representative):
            raise ValueError("int8 quantisation needs representative images")
        sample = np.asarray(representative, dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([sample[i : i + 1]] for i in range(len(sample)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    return converter.convert()


def tflite_interpreter(model: bytes | str | Path, threads: int | None = None) -> Any:
    """An allocated interpreter: LiteRT's (``ai_edge_litert``) when installed, else ``tf.lite.Interpreter``.

    TF 2.21 still ships ``tf.lite.Interpreter`` (deprecated in favour of LiteRT); its deprecation warning is
    silenced here because the fallback is deliberate.
    """
    kwargs: dict[str, Any] = {"num_threads": threads or cpu_count()}
    if isinstance(model, bytes):
        kwargs["model_content"] = model
    else:
        kwargs["model_path"] = str(model)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(**kwargs)
    else:
        interpreter = Interpreter(**kwargs)
    interpreter.allocate_tensors()
    return interpreter


def tflite_predict(interpreter: Any, images: np.ndarray) -> np.ndarray:
    """Probabilities for ``images`` (N, H, W, 3), one invoke per image (the batch-1 signature)."""
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    rows = []
    for image in np.asarray(images, dtype=np.float32):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        rows.append(np.array(interpreter.get_tensor(out["index"])[0], dtype=np.float64))
    return np.stack(rows) if rows else np.empty((0, 0))


def keras_predict(model: Any, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Probabilities of a deployable Keras model for raw images (inference mode)."""
    from study.train.training import predict_proba

    return predict_proba(model, np.asarray(images, dtype=np.float32), batch_size)


def median_ms(call: Callable[[], Any], runs: int = LATENCY_RUNS, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def keras_latency_ms(model: Any, image: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    """Median wall time of one single-image forward pass (a traced ``tf.function``, as the study measures)."""
    import tensorflow as tf

    x = tf.constant(np.asarray(image, dtype=np.float32)[None])
    fn = tf.function(lambda t: model(t, training=False))
    return median_ms(lambda: fn(x).numpy(), runs)


def tflite_latency_ms(interpreter: Any, image: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    x = np.asarray(image, dtype=np.float32)[None]

    def call() -> Any:
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return median_ms(call, runs)


def _without_compile_config(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: _without_compile_config(v) for k, v in config.items() if k != "compile_config"}
    if isinstance(config, list):
        return [_without_compile_config(v) for v in config]
    return config


def inference_model(model: Any) -> Any:
    """``model`` without training state, for saving: the same layers and weights, nothing compiled.

    A compiled model, or one holding a compiled sub-model (the scratch strategies' deployables wrap the model
    they trained), saves its optimizer's slots too: with Adam, two more copies of every weight in ``.keras``
    (measured: 27.6 MB instead of 9.6 MB for MobileNetV2). Such a model is rebuilt from its config without
    the ``compile_config`` entries and given the same weights; an uncompiled one is returned as is.
    """
    import keras

    def compiled(m: Any) -> bool:
        own = getattr(m, "optimizer", None) is not None
        return own or any(compiled(layer) for layer in getattr(m, "layers", []) if isinstance(layer, keras.Model))

    if not compiled(model):
        return model
    copy = type(model).from_config(_without_compile_config(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def _accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(proba.argmax(axis=1) == y)) if len(y) else float("nan")


def _mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def deployment_metrics(
    model: Any,
    x_test_images: np.ndarray,
    y_test: np.ndarray,
    image_size: int,
    representative: np.ndarray,
    out_dir: Path | None = None,
    *,
    latency_runs: int = LATENCY_RUNS,
    threads: int | None = None,
) -> dict[str, Any]:
    """Save, reload, convert and measure a deployable model; returns the ``metrics["deploy"]`` record.

    ``x_test_images``: raw test images (uint8 or float 0..255, N x S x S x 3) with labels ``y_test``;
    ``representative``: training images for int8 calibration (sampled down to ``REPRESENTATIVE_IMAGES``).
    With ``out_dir`` the files stay there (``model.keras``, ``model_<variant>.tflite``); otherwise they are
    written to a temporary folder and removed. Returns, per format (``keras``, ``tflite_<variant>``): ``mb``
    (file size), ``latency_ms``, ``accuracy`` on the test images, and for TFLite ``agreement`` (share of test
    images whose top class equals the Keras model's) and ``max_abs_diff`` (largest probability difference from
    Keras); plus ``int8_accuracy_delta`` (int8 minus float32 TFLite accuracy, in [-1, 1]) and
    ``keras_reload_max_abs_diff`` (the saved ``.keras`` file reloaded against the model in memory; saved without
    training state, ``inference_model``). A variant
    whose conversion fails has ``{"error": "..."}`` instead of figures.
    """
    import keras

    import study.zoo.preprocessing  # noqa: F401 - registers Preprocess for load_model

    threads = threads or cpu_count()
    x = np.asarray(x_test_images, dtype=np.float32)
    y = np.asarray(y_test, dtype=np.int64)
    calib = np.asarray(representative_sample(np.asarray(representative)), dtype=np.float32)
    probe = x[0] if len(x) else calib[0]
    work = Path(tempfile.mkdtemp(prefix="deploy-"))
    try:
        folder = Path(out_dir) if out_dir is not None else work
        folder.mkdir(parents=True, exist_ok=True)
        keras_path = folder / "model.keras"
        proba = keras_predict(model, x)
        model = inference_model(model)
        model.save(keras_path)
        reloaded = keras.saving.load_model(keras_path)
        reload_diff = float(np.max(np.abs(keras_predict(reloaded, x) - proba))) if len(x) else 0.0
        out: dict[str, Any] = {
            "keras": {"mb": _mb(keras_path), "latency_ms": keras_latency_ms(model, probe, latency_runs),
                      "accuracy": _accuracy(y, proba)},
            "keras_reload_max_abs_diff": reload_diff,
        }  # fmt: skip
        saved = export_saved_model(model, image_size, work / "saved_model")
        for variant in VARIANTS:
            try:
                content = convert_tflite(saved, variant, calib)
            except Exception as exc:  # noqa: BLE001 - a failed conversion is a result to record, not a crash
                out[f"tflite_{variant}"] = {"error": f"{type(exc).__name__}: {_first_line(exc)}"}
                continue
            path = folder / f"model_{variant}.tflite"
            path.write_bytes(content)
            interpreter = tflite_interpreter(path, threads)
            p = tflite_predict(interpreter, x)
            out[f"tflite_{variant}"] = {
                "mb": _mb(path),
                "latency_ms": tflite_latency_ms(interpreter, probe, latency_runs),
                "accuracy": _accuracy(y, p),
                "agreement": float(np.mean(p.argmax(axis=1) == proba.argmax(axis=1))) if len(x) else float("nan"),
                "max_abs_diff": float(np.max(np.abs(p - proba))) if len(x) else float("nan"),
            }
        f32, i8 = out["tflite_float32"], out["tflite_int8"]
        out["int8_accuracy_delta"] = (
            i8["accuracy"] - f32["accuracy"] if "accuracy" in i8 and "accuracy" in f32 else None
        )
        out.update(
            int8_io=INT8_IO,
            n_test=int(len(x)),
            representative_images=int(len(calib)),
            threads=threads,
            latency_runs=latency_runs,
        )
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
