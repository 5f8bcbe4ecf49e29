"""The suite runs with TensorFlow's graph optimizer (grappler) off
(``tests/conftest.py``: most tests trace many small graphs and run them a few
times, where optimizing each costs more than it saves). Users run with it on.
This is the check that it changes nothing our searches compute: the same
searches, from the same seed, with grappler on and off, end in the same state.

Covered: a Gumbel DARTS-style supernet (separable convolutions and BatchNorm,
which grappler's remapper fuses) searched bi-level, and a BARS binary supernet
(larq's custom-gradient quantizers, depth and width gates) with BARS' callbacks.
"""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.eager import context

import searchlayers as sl
from searchlayers import datasets
from conftest import tiny_supernet

K = sl.keras
OFF = "disable_meta_optimizer"


def _grappler_runs():
    """Whether functions called now get grappler (the config the runtime is given)."""
    config = config_pb2.ConfigProto.FromString(
        context.context().function_call_options.config_proto_serialized)
    return not config.graph_options.rewrite_options.disable_meta_optimizer


def _darts():
    return tiny_supernet("gumbel", channels=4), True, [sl.EntropyRegularizer(start=0.01)]


def _bars():
    from models import bars

    net = bars.bars_supernet((8, 8, 1), 10, channels=4, stages=1, cells=1, steps=1)
    return net, True, bars.search_callbacks(2, warmup=1)


def _search(builder, grappler):
    """``(variables, arch variable names)`` after a two-epoch search (4 steps)
    with grappler on or off."""
    before = tf.config.optimizer.get_experimental_options().get(OFF, False)
    tf.config.optimizer.set_experimental_options({OFF: not grappler})
    try:
        assert _grappler_runs() == grappler
        K.backend.clear_session()
        K.utils.set_random_seed(0)
        net, bilevel, callbacks = builder()
        model = sl.SearchModel(net, bilevel=bilevel, arch_optimizer=K.optimizers.Adam(0.05))
        model.compile(K.optimizers.SGD(0.05, momentum=0.9),
                      K.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = datasets.arrays("digits", "train", limit=32)
        train = tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(8)
        val = tf.data.Dataset.from_tensor_slices((x[16:], y[16:])).batch(8)
        model.fit(tf.data.Dataset.zip((train, val)), epochs=2, verbose=0, callbacks=callbacks)
        return ({v.name: v.numpy() for v in net.variables},
                {v.name for v in sl.arch_variables(net)})
    finally:
        tf.config.optimizer.set_experimental_options({OFF: before})


def test_the_suite_runs_without_grappler():
    assert not _grappler_runs()


@pytest.mark.parametrize("builder", [_darts, _bars], ids=["darts", "bars"])
def test_search_state_is_the_same_with_and_without_grappler(builder):
    (on, arch), (off, _) = _search(builder, grappler=True), _search(builder, grappler=False)
    assert on.keys() == off.keys() and arch and arch <= on.keys()
    for name, value in on.items():
        np.testing.assert_allclose(value, off[name], rtol=1e-4, atol=1e-5, err_msg=name)
        if name in arch:
            assert np.abs(value).max() > 1e-3, name  # the search moved it
