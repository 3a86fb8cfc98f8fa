"""study.train.pointwise: the trained form of a backbone computes what the backbone computes, 1x1 convolutions as
matrix products."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from study.train.pointwise import is_pointwise, pointwise_as_matmul, pointwise_conv2d
from study.zoo.backbones import build_backbone, list_backbones


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


@pytest.mark.parametrize("name", list_backbones())
def test_every_pointwise_convolution_becomes_a_matmul_with_the_same_output(name):
    keras.utils.set_random_seed(0)
    backbone = build_backbone(name, 64, weights=None)
    inputs = keras.Input((64, 64, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(backbone(inputs)))  # nested, as in scratch
    pointwise = sum(is_pointwise(layer) for layer in _layers(model))
    if name.startswith(("mobilenet", "efficientnet")):
        assert pointwise > 10  # depthwise-separable networks: mostly 1x1 convolutions (VGG has none)

    copy = pointwise_as_matmul(model)
    assert sum(type(layer) is pointwise_conv2d() for layer in _layers(copy)) == pointwise
    assert not any(is_pointwise(layer) for layer in _layers(copy))
    assert [v.path.split("/")[-1] for v in copy.variables] == [v.path.split("/")[-1] for v in model.variables]
    for a, b in zip(copy.variables, model.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(copy(x, training=False), model(x, training=False), rtol=1e-4, atol=1e-4)
