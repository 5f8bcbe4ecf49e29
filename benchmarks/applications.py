"""The ``tf_keras.applications`` FiGS setup shared by ``benchmarks.figs_applications``
and ``tests/test_applications_derive.py``: the families, BN statistics that keep
a signal, a forced mask architecture, saturated mask logits. Not a benchmark.

Example:
    >>> sorted(FAMILIES)[:2]
    ['DenseNet121', 'EfficientNetB0']
"""

import numpy as np
import tf_keras

import searchlayers as sl
from searchlayers.architecture import Architecture

APPS = tf_keras.applications
SHAPE = (32, 32, 3)
FAMILIES = {
    "MobileNetV2": lambda: APPS.MobileNetV2(input_shape=SHAPE, alpha=0.35, weights=None,
                                            classes=10, classifier_activation=None),
    "MobileNetV3Small": lambda: APPS.MobileNetV3Small(
        input_shape=SHAPE, alpha=0.75, weights=None, classes=10, classifier_activation=None),
    "EfficientNetB0": lambda: APPS.EfficientNetB0(input_shape=SHAPE, weights=None, classes=10,
                                                  classifier_activation=None),
    "ResNet50": lambda: APPS.ResNet50(input_shape=SHAPE, weights=None, classes=10,
                                      classifier_activation=None),
    "DenseNet121": lambda: APPS.DenseNet121(input_shape=SHAPE, weights=None, classes=10,
                                            classifier_activation=None),
}


def randomize_batchnorm(model, seed=0):
    """BN statistics away from the identity, so that the signal survives ~100 layers
    (with fresh statistics the logits of these models are ~1e-10)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, sl.keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([(1 + 0.3 * rng.normal(size=g.shape)).astype("f"),
                               (0.3 * rng.normal(size=b.shape)).astype("f"),
                               (0.3 * rng.normal(size=m.shape)).astype("f"),
                               (0.5 + rng.random(v.shape)).astype("f")])


def forced_architecture(model, off, seed=0):
    """A random ``off`` fraction of the channels of every mask group switched off
    (one draw per group: the members of a group keep the same channels)."""
    rng = np.random.default_rng(seed)
    by_key, choices = {}, {}
    for mask in sl.layers.figs_masks(model):
        key = mask.arch_key or mask.name
        if key not in by_key:
            n = mask.channels
            keep = max(1, n - int(round(off * n)))
            by_key[key] = sorted(rng.choice(n, keep, replace=False).tolist())
        choices[mask.name] = by_key[key]
    return Architecture(choices)


def saturate(model, architecture):
    """Mask logits of +-40 (p = 1 or 0 to float precision) at ``architecture``."""
    for mask in sl.layers.figs_masks(model):
        logits = np.full([mask.channels], -40.0, np.float32)
        logits[architecture.choices[mask.name]] = 40.0
        mask.arch("logits").assign(logits)
