"""Training-time 1x1 convolutions as matrix products.

A 1x1, stride-1 convolution is a matrix product over the channel axis. TensorFlow's CPU convolution kernels are
slow for it on small feature maps: MobileNetV2's top blocks at 64 px run on 2x2 and 4x4 maps, where one
convolution's forward and backward pass (batch 32, 320 -> 1280 channels, one thread) took 27 ms against 5 ms as a
``MatMul`` (``bench/README.md``, throughput), and such convolutions are most of a fine-tuning step. The models the
image-level strategies *train* therefore get ``PointwiseConv2D`` layers: same weights, same variable order, same
arithmetic up to float rounding. The deployable models are built from the backbone's own layers and given the trained
weights (``study.train.strategies._deployable_later``), so nothing saved or exported uses this class.
"""

from __future__ import annotations

from typing import Any

_CLASS: Any = None


def pointwise_conv2d() -> Any:
    """The ``keras.layers.Conv2D`` subclass whose convolution is a reshape and a ``MatMul``."""
    global _CLASS
    if _CLASS is None:
        import keras
        from keras import ops

        class PointwiseConv2D(keras.layers.Conv2D):
            def convolution_op(self, inputs: Any, kernel: Any) -> Any:
                shape = ops.shape(inputs)
                flat = ops.matmul(ops.reshape(inputs, (-1, shape[-1])), kernel[0, 0])
                return ops.reshape(flat, (*shape[:-1], kernel.shape[-1]))

        _CLASS = PointwiseConv2D
    return _CLASS


def is_pointwise(layer: Any) -> bool:
    """A plain channels-last 1x1 convolution with stride 1: a matrix product over channels."""
    import keras

    return (
        type(layer) is keras.layers.Conv2D
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
    )


def pointwise_as_matmul(model: Any) -> Any:
    """A copy of functional ``model`` whose 1x1 convolutions, nested models' included, are ``PointwiseConv2D``,
    holding the same variables, random seed states included (the other layers are recreated from their configs;
    names, order, trainability and seeds are kept)."""
    import keras

    cls = pointwise_conv2d()

    def clone(layer: Any) -> Any:
        return (cls if is_pointwise(layer) else type(layer)).from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for mine, theirs in zip(copy.variables, model.variables, strict=True):  # weights and seed states alike
        mine.assign(theirs)
    return copy
