"""The backbones' input preprocessing as one serialisable Keras layer, shared by training and deployment.

Keras Applications preprocess images in one of a few ``mode``\\ s (``keras.applications.imagenet_utils``); each
backbone in the registry (``study.zoo.backbones``) names its mode, and this module is the only implementation the
study uses: the activation cache, training on images and every exported model (``study.train.strategies.deployable``)
go through ``preprocess_images``. Exported models carry it as the registered layer ``Preprocess`` (not a
``Lambda``, which does not round-trip through ``.keras`` files), so a saved model takes raw RGB images.

Modes (channels-last RGB input, float 0..255), each equal to Keras' own ``preprocess_input``:

- ``tf``: ``x / 127.5 - 1`` (MobileNet, MobileNetV2, Inception, Xception);
- ``torch``: ``x / 255``, minus the ImageNet mean ``(0.485, 0.456, 0.406)``, divided by its std
  ``(0.229, 0.224, 0.225)`` per channel (DenseNet);
- ``caffe``: RGB to BGR, minus the ImageNet BGR mean ``(103.939, 116.779, 123.68)``, no scaling (VGG, ResNet);
- ``none``: unchanged (EfficientNet, ConvNeXt, MobileNetV3: they rescale inside the network);
- ``lite``: ``(x - 127) / 128`` (EfficientNet-Lite: TensorFlow's ``efficientnet_lite_builder``, ``MEAN_RGB`` 127,
  ``STDDEV_RGB`` 128; no Keras module has it).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from study.errors import StudyError

TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
MODES = ("tf", "torch", "caffe", "none", "lite")
LITE_MEAN, LITE_STD = 127.0, 128.0


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise StudyError(f"unknown preprocessing mode {mode!r}; known modes: {', '.join(MODES)}")
    return mode


def preprocess_images(x: Any, mode: str) -> Any:
    """Float images (..., H, W, 3) RGB 0..255 to what a backbone of ``mode`` expects (same ops as Keras, or as
    TensorFlow's EfficientNet-Lite input pipeline for ``lite``)."""
    from keras import ops

    check_mode(mode)
    x = ops.cast(x, "float32")
    if mode == "none":
        return x
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "lite":
        return (x - LITE_MEAN) / LITE_STD
    if mode == "torch":
        x = x / 255.0
        mean, std = TORCH_MEAN, TORCH_STD
    else:  # caffe
        x = ops.flip(x, axis=-1)  # RGB -> BGR
        mean, std = CAFFE_MEAN_BGR, None
    x = x + ops.convert_to_tensor(-np.array(mean), dtype="float32")
    if std is not None:
        x = x / ops.convert_to_tensor(np.array(std), dtype="float32")
    return x


@keras.saving.register_keras_serializable(package="transfer_study")
class Preprocess(keras.layers.Layer):
    """Raw RGB images (float 0..255) in, the backbone's expected input out; ``mode`` as in the module doc."""

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = check_mode(mode)

    def call(self, inputs: Any) -> Any:
        return preprocess_images(inputs, self.mode)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}
