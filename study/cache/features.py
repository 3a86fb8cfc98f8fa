"""Frozen feature extraction on top of the activation cache.

``FeatureEngine`` answers "the activations of backbone B at layer L for these rows of this split", building
the frozen network only when the cache misses. Every strategy that freezes something goes through it, which
is what makes seeds, training-set sizes and tuning trials nearly free after the first cell of a dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from study.cache.activations import ActivationCache, ExtractFn, cache_key
from study.config import WeightsDirs
from study.data.cell_data import CellData
from study.zoo.backbones import BackboneSpec, build_backbone, preprocess_fn, resolve_weights, split_at, weights_checksum

POOLED = "pooled"  # pseudo layer name: the backbone output after global average pooling

# Deterministic augmentation recipe for cached views (the Keras transfer-learning guide's flip/rotation/zoom/
# contrast): each (view, row) pair gets its own stateless seed.
AUGMENT_RECIPE = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.1, "contrast": 0.1}


class FeatureEngine:
    """Cached frozen activations for cells, keyed by data content, weights checksum and freeze point."""

    def __init__(self, cache_dir: Path, weights: WeightsDirs, batch_size: int = 64) -> None:
        self.cache = ActivationCache(cache_dir, batch_size=batch_size)
        self.weights = weights  # where the backbones' pretrained weights are found
        self._extractors: dict[tuple, Any] = {}
        self._backbones: dict[tuple, Any] = {}

    def activations(
        self,
        data: CellData,
        spec: BackboneSpec,
        layer: str,
        split: str,
        indices: np.ndarray,
        views: int = 1,
        via: str | None = None,
    ) -> np.ndarray:
        """Frozen activations of ``split`` rows ``indices``: shape (views, n, ...); view 0 is un-augmented.

        ``via`` (pooled features only): derive missing rows from that layer's cached activations."""
        images = data.pool.images if split == "pool" else data.test.images
        weights_sha = weights_checksum(resolve_weights(spec, self.weights))
        out = []
        for view in range(views):
            key = cache_key(
                data=data.fingerprint,
                split=split,
                size=data.image_size,
                backbone=spec.name,
                weights=weights_sha,
                layer=layer,
                view=view,
                augment=AUGMENT_RECIPE if view else None,
            )
            meta = {"dataset": data.dataset, "split": split, "backbone": spec.name, "layer": layer, "view": view}
            out.append(
                self.cache.get(
                    key,
                    images,
                    indices,
                    lambda spec=spec, layer=layer, view=view: self._extractor(
                        spec, data.image_size, layer, view, data, split, via
                    ),
                    lazy_extract=True,
                    meta=meta,
                )
            )
        return np.stack(out)

    def pooled(
        self,
        data: CellData,
        spec: BackboneSpec,
        split: str,
        indices: np.ndarray,
        views: int = 1,
        via: str | None = None,
    ) -> np.ndarray:
        """Pooled backbone outputs. With ``via`` (a block boundary) missing rows are derived from that layer's
        cached activations by running only the frozen layers above it, so a strategy that needs both (the two
        phases of ``fine_tune_top``) never runs the prefix twice. The values are the same pooled features."""
        return self.activations(data, spec, POOLED, split, indices, views, via)

    def _extractor(self, spec: BackboneSpec, image_size: int, layer: str, view: int, data: Any = None,
                   split: str = "pool", via: str | None = None) -> ExtractFn:  # fmt: skip
        if layer == POOLED and via is not None and data is not None:
            top = self._top(spec, image_size, via)

            def from_cached(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
                lower = self.activations(data, spec, via, split, rows, views=view + 1)[view]
                return top(lower)

            return from_cached
        key = (spec.name, image_size, layer)
        if key not in self._extractors:
            self._extractors[key] = _build_extractor(self._backbone(spec, image_size), spec, layer)
        base = self._extractors[key]
        if view == 0:
            return lambda images, rows: base(images.astype(np.float32))
        return lambda images, rows: base(augment_views(images, rows, view))

    def _backbone(self, spec: BackboneSpec, image_size: int) -> Any:
        """One frozen ImageNet backbone per (backbone, size), shared by every extractor cut from it."""
        key = (spec.name, image_size)
        if key not in self._backbones:
            self._backbones[key] = build_backbone(spec, image_size, weights="imagenet", dirs=self.weights)
        return self._backbones[key]

    def _top(self, spec: BackboneSpec, image_size: int, layer: str) -> Any:
        key = (spec.name, image_size, "top", layer)
        if key not in self._extractors:
            import keras
            import tensorflow as tf

            top = split_at(self._backbone(spec, image_size), layer)[1]
            net = keras.Sequential([top, keras.layers.GlobalAveragePooling2D()])
            net.trainable = False
            signature = [tf.TensorSpec([None, *top.input.shape[1:]], tf.float32)]

            @tf.function(input_signature=signature)
            def run(x: Any) -> Any:
                return net(x, training=False)

            self._extractors[key] = lambda x: run(tf.convert_to_tensor(x, dtype=tf.float32)).numpy()
        return self._extractors[key]


def _build_extractor(model: Any, spec: BackboneSpec, layer: str) -> Any:
    import keras
    import tensorflow as tf

    if layer == POOLED:
        net = keras.Sequential([model, keras.layers.GlobalAveragePooling2D()])
    else:
        net = split_at(model, layer)[0]
    net.trainable = False
    prep = preprocess_fn(spec)
    signature = [tf.TensorSpec([None, *model.input.shape[1:]], tf.float32)]  # any batch size, one trace

    @tf.function(input_signature=signature)
    def run(x: Any) -> Any:
        return net(prep(x), training=False)

    return lambda x: run(tf.convert_to_tensor(x, dtype=tf.float32)).numpy()


def augment_views(images: np.ndarray, rows: np.ndarray, view: int) -> np.ndarray:
    """A deterministic augmented copy of each image: seeded by (view, row), independent of batching."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images, dtype=tf.float32)
    seeds = tf.stack([tf.fill([len(rows)], view), tf.constant(rows, dtype=tf.int32)], axis=1)
    s = tf.shape(x)[1]
    u = tf.map_fn(lambda sd: tf.random.stateless_uniform([4], seed=sd), seeds, fn_output_signature=tf.float32)
    flip = u[:, 0] < 0.5
    x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
    angle = (u[:, 1] * 2 - 1) * AUGMENT_RECIPE["rotation"] * 2 * np.pi
    zoom = 1.0 + (u[:, 2] * 2 - 1) * AUGMENT_RECIPE["zoom"]
    x = _rotate_zoom(x, angle, zoom, s)
    factor = 1.0 + (u[:, 3] * 2 - 1) * AUGMENT_RECIPE["contrast"]
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    x = (x - mean) * factor[:, None, None, None] + mean
    return tf.clip_by_value(x, 0.0, 255.0).numpy()


def _rotate_zoom(x: Any, angle: Any, zoom: Any, size: Any) -> Any:
    """Rotate by ``angle`` and scale by ``zoom`` about the centre, reflecting at borders (as Keras does)."""
    import tensorflow as tf

    c = (tf.cast(size, tf.float32) - 1) / 2
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # Projective transform mapping output pixel -> input pixel.
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = c - a0 * c - a1 * c
    b2 = c - b0 * c - b1 * c
    zeros = tf.zeros_like(cos)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transforms,
        output_shape=tf.stack([size, size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
