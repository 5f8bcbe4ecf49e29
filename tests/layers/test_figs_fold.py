"""Masks folded into a neighbour's weights (``figs_fold``): the same outputs and
gradients as multiplying masks (``insert_masks(fold=False)``, the reference),
which masks fold, derive, save / load, Sequential, MirroredStrategy."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers.layers import figs_fold
from searchlayers.transforms import insert_masks
from conftest import mirrored_strategy
from test_derive_figs import mobilenet_like, small_resnet

K = sl.keras
L = K.layers


def branches():
    """Every fold rule once: a separable-conv consumer, a BN through
    ``Activation("relu")``, a BN through ``LeakyReLU`` with two consumers, a BN
    through a ReLU layer called twice, and a mask that must multiply (ReLU6
    before two consumers)."""
    x = K.Input((8, 8, 3))
    h = L.BatchNormalization(name="a_bn")(L.Conv2D(6, 3, padding="same", name="a")(x))
    h = L.Activation("relu")(h)
    h = L.SeparableConv2D(6, 3, padding="same", name="b")(h)
    h = L.LeakyReLU(0.2)(L.BatchNormalization(name="b_bn")(h))
    c = L.Conv2D(4, 1, name="c")(h)
    c = L.ReLU(6.0)(L.BatchNormalization(name="c_bn")(c))
    relu = L.ReLU()  # shared
    d = relu(L.BatchNormalization(name="d_bn")(L.Conv2D(4, 1, name="d")(h)))
    y = relu(L.Concatenate()([c, L.Add()([c, d]), d]))
    y = L.Dense(5, name="head")(L.GlobalAveragePooling2D()(y))
    return K.Model(x, y, name="branches")


def padded():
    """keras.applications' MobileNetV2 strided block: ZeroPadding2D before a valid
    depthwise conv (the expand mask folds through the padding); a mask after
    ReLU6 into pooling (multiplies)."""
    x = K.Input((8, 8, 3))
    h = L.ReLU(6.0)(L.BatchNormalization(name="e_bn")(L.Conv2D(6, 1, name="e")(x)))
    h = L.DepthwiseConv2D(3, strides=2, name="dw")(L.ZeroPadding2D(((0, 1), (0, 1)))(h))
    h = L.ReLU(6.0)(L.BatchNormalization(name="dw_bn")(h))
    return K.Model(x, L.Dense(5, name="head")(L.GlobalAveragePooling2D()(h)))


def _pair(build, **kwargs):
    base = build()
    return insert_masks(base, fold=False, **kwargs), insert_masks(base, **kwargs)


def _randomize(models, seed=0):
    """The same random BN scales and offsets and mask logits near 0 in ``models``,
    at temperature 0.5: masks strictly between 0 and 1 (soft), or varying (hard)."""
    rng = np.random.default_rng(seed)
    for variables in zip(*(m.weights for m in models)):
        name = variables[0].name
        if "gamma" in name or "beta" in name or "arch_logits" in name:
            value = rng.normal(0.5 if "arch" not in name else 0.0, 0.5, variables[0].shape)
            for v in variables:
                v.assign(value.astype("f"))
    for masks in zip(*(sl.layers.figs_masks(m) for m in models)):
        for mask in masks:
            mask.temperature.assign(0.5)


def _forward_backward(model, x, training):
    with tf.GradientTape() as tape:
        y = model(x, training=training)
        loss = tf.reduce_sum(tf.sin(3.0 * y) * tf.range(y.shape[-1], dtype=y.dtype))
    grads = tape.gradient(loss, model.trainable_variables)
    return y.numpy(), [None if g is None else tf.convert_to_tensor(g).numpy() for g in grads]


def assert_same_function(reference, folded, x):
    """Outputs and the gradient of every trainable variable agree, in training
    (same noise: same mask names and steps) and in inference."""
    assert [v.shape for v in reference.trainable_variables] == \
        [v.shape for v in folded.trainable_variables]
    for training in (True, False):
        y0, g0 = _forward_backward(reference, x, training)
        y1, g1 = _forward_backward(folded, x, training)
        np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
        assert [g is None for g in g1] == [g is None for g in g0]  # masks' in inference
        scale = max(float(np.abs(g).max()) for g in g0 if g is not None)
        for v, a, b in zip(reference.trainable_variables, g0, g1):
            if a is not None:
                np.testing.assert_allclose(b, a, atol=1e-5 * scale, err_msg=f"{v.name}")


def _folded(model):
    return {m.name: type(m.folded_into).__name__ for m in sl.layers.figs_masks(model)
            if m.folded_into is not None}


CASES = {
    # resnet: the stem's mask (ReLU, then a conv and the residual Add) folds into its
    # BN only with soft masks; the first conv of a block folds into the second.
    ("resnet", False): {"stem_mask": "MaskedBatchNormalization",
                        "b0_c1_mask": "MaskedConv2D", "b1_c1_mask": "MaskedConv2D",
                        "b0_c2_mask": "MaskedBatchNormalization",
                        "b1_c2_mask": "MaskedBatchNormalization",
                        "b1_proj_mask": "MaskedBatchNormalization"},
    # MobileNetV2: masks after ReLU6 fold into the next (depthwise) conv.
    ("mobilenet", False): {"stem_mask": "MaskedBatchNormalization",
                           "e0_mask": "MaskedDepthwiseConv2D", "dw0_mask": "MaskedConv2D",
                           "p0_mask": "MaskedBatchNormalization",
                           "e1_mask": "MaskedDepthwiseConv2D", "dw1_mask": "MaskedConv2D",
                           "p1_mask": "MaskedBatchNormalization"},
    ("branches", False): {"a_mask": "MaskedSeparableConv2D",
                          "b_mask": "MaskedBatchNormalization",
                          "d_mask": "MaskedBatchNormalization"},
    ("branches", True): {"a_mask": "MaskedSeparableConv2D"},
    ("padded", False): {"e_mask": "MaskedDepthwiseConv2D"},
    ("padded", True): {"e_mask": "MaskedDepthwiseConv2D"},
}
BUILDS = {"resnet": small_resnet, "mobilenet": mobilenet_like, "branches": branches,
          "padded": padded}


@pytest.mark.parametrize("name,hard", [("resnet", False), ("resnet", True),
                                       ("mobilenet", False), ("mobilenet", True),
                                       ("branches", False), ("branches", True),
                                       ("padded", False)])
def test_folded_masks_compute_what_multiplying_masks_compute(name, hard):
    reference, folded = _pair(BUILDS[name], hard=hard)
    expected = CASES.get((name, hard))
    if expected is None:  # hard masks fold through no activation: the stem multiplies
        expected = {k: v for k, v in CASES[(name, False)].items() if k != "stem_mask"}
    assert _folded(folded) == expected
    assert not _folded(reference)
    _randomize([reference, folded])
    if name == "branches":  # ReLU6 saturates: m * relu6(z) != relu6(m * z) there
        for model in (reference, folded):
            model.get_layer("c_bn").gamma.assign(tf.fill([4], 8.0))
    x = tf.constant(np.random.default_rng(1).random((4, *folded.input_shape[1:]), "f"))
    assert_same_function(reference, folded, x)


def test_fixed_choice_and_keep_one_fold_too():
    reference, folded = _pair(mobilenet_like, keep_one=True)
    _randomize([reference, folded], seed=2)
    for model in (reference, folded):
        masks = sl.layers.figs_masks(model)
        masks[1].set_choice([0, 2])  # a depthwise conv's input mask
        masks[-1].set_choice([1])  # a BN's output mask
    x = tf.constant(np.random.default_rng(3).random((4, 8, 8, 3), "f"))
    assert_same_function(reference, folded, x)


def test_derived_model_is_plain_keras_and_equal():
    reference, folded = _pair(small_resnet)
    _randomize([reference, folded], seed=4)
    children = [sl.derive(m, "argmax") for m in (reference, folded)]
    assert not any(isinstance(layer, figs_fold.FoldsMask) for layer in children[1].layers)
    assert [type(a) for a in children[0].layers] == [type(b) for b in children[1].layers]
    x = np.random.default_rng(5).random((4, 8, 8, 1), "f")
    np.testing.assert_allclose(children[1].predict(x, verbose=0),
                               children[0].predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("suffix", [".h5", ""])
def test_loaded_model_relinks_its_folds(tmp_path, suffix):
    reference, folded = _pair(mobilenet_like)
    _randomize([reference, folded], seed=6)
    path = str(tmp_path / f"folded{suffix}")
    folded.save(path)
    loaded = K.models.load_model(path)
    sl.tie_arch_variables(loaded)  # as every entry point of the package does
    assert _folded(loaded) == CASES[("mobilenet", False)]
    for mask in sl.layers.figs_masks(loaded):
        mask.temperature.assign(0.5)  # saved as a variable; same value
    x = tf.constant(np.random.default_rng(7).random((4, 8, 8, 3), "f"))
    assert_same_function(reference, loaded, x)


def test_sequential_gets_a_folded_sequential():
    base = K.Sequential([K.Input((8, 8, 2)), L.Conv2D(4, 3), L.BatchNormalization(),
                         L.ReLU(), L.Conv2D(4, 3), L.Flatten(), L.Dense(3)])
    reference, folded = insert_masks(base, fold=False), insert_masks(base)
    assert isinstance(folded, K.Sequential)
    assert [type(layer).__name__ for layer in folded.layers] == [
        "Conv2D", "BatchNormalization", "ReLU", "FiGSMask", "MaskedConv2D", "FiGSMask",
        "Flatten", "Dense"]
    _randomize([reference, folded], seed=8)
    assert_same_function(reference, folded,
                         tf.constant(np.random.default_rng(9).random((4, 8, 8, 2), "f")))


def test_replicas_of_a_mirrored_strategy_each_apply_their_mask():
    """Two replicas trace the folded layers at once (each in its own thread)."""
    strategy = mirrored_strategy()
    base = small_resnet()
    reference = insert_masks(base, fold=False)
    with strategy.scope():
        folded = insert_masks(base)
    x = tf.constant(np.random.default_rng(10).random((4, 8, 8, 1), "f"))
    want = reference(x, training=True).numpy()
    step = tf.function(lambda: strategy.run(lambda: folded(x, training=True)))
    for replica in strategy.experimental_local_results(step()):
        np.testing.assert_allclose(replica.numpy(), want, rtol=1e-5, atol=1e-5)


def test_a_folded_consumer_takes_only_its_mask():
    _, folded = _pair(small_resnet)
    conv = folded.get_layer("b0_c2")  # applies b0_c1's mask
    assert type(conv).__name__ == "MaskedConv2D"
    with pytest.raises(ValueError, match=r"MaskedConv2D 'b0_c2'.*b0_c1_mask.*fold=False"):
        conv(folded.get_layer("stem_mask").output)


def test_a_part_that_reads_a_folded_mask_elsewhere_is_an_error():
    _, folded = _pair(small_resnet)
    mask = folded.get_layer("b0_c1_mask")  # folded into the conv b0_c2
    for outputs in (mask.output, L.GlobalAveragePooling2D()(mask.output)):
        with pytest.raises(ValueError, match=r"b0_c1_mask.*folded into 'b0_c2'.*fold=False"):
            sl.tie_arch_variables(K.Model(folded.input, outputs))
    sl.tie_arch_variables(K.Model(folded.input, folded.get_layer("b0_c2").output))  # fine


def test_fold_is_checked():
    with pytest.raises(Exception, match=r"insert_masks.*fold.*'yes'"):
        insert_masks(small_resnet(), fold="yes")
