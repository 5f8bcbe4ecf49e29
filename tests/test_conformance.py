"""Conformance of every search layer to the ``SearchLayer`` protocol, and of the
channel-rule registry to its claims, in larq's style: one table each.

Search layers: every class (and every relaxation mode of ``MixedOp``, every
``derivation`` answer) runs choose -> apply_architecture -> derive -> parity
(the derived model's output equals the supernet's with the choice fixed) ->
get_config / from_config round trip, plus the choice part of the protocol
(``searchlayers.layers.base``).

Registry: every stock layer class ``searchlayers.slicing`` holds a rule for has
a row here; each row's layer reads a FiGS-masked tensor, and the derived model
(half of the channels kept) matches the supernet and is narrower exactly where
the rule is not opaque.
"""

import inspect

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import slicing
from searchlayers.layers import base, binary
from searchlayers.layers import (EnTranCell, FiGSMask, GumbelDepthGate, MixedOp, WidthGate)

K = sl.keras
L = K.layers
ATOL = 1e-5


def _head(h):
    return L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h))


def _edge(mode, candidates=("sep_conv_3x3", "max_pool_3x3", "skip_connect", "none"),
          pick=0, channels=4):
    """conv -> MixedOp -> head; the logits point at candidate ``pick``."""
    def build():
        x = K.Input((6, 6, channels))
        h = L.Conv2D(channels, 3, padding="same", name="stem")(x)
        op = MixedOp(list(candidates), mode=mode, name="edge")
        model = K.Model(x, _head(op(h)))
        if op.has_logits:
            op.arch("logits").assign(np.eye(len(candidates))[pick] * 2.0 - 1.0)
        return model
    return build


def _none_in_add():
    """An edge chosen 'none' next to a skip: the Add loses that input (``Drop``)."""
    x = K.Input((6, 6, 4))
    h = L.Conv2D(4, 3, padding="same", name="stem")(x)
    op = MixedOp(["conv_3x3", "none"], name="edge")
    model = K.Model(x, _head(L.Add()([op(h), h])))
    op.arch("logits").assign([-1.0, 1.0])
    return model


def _width():
    x = K.Input((6, 6, 2))
    h = WidthGate(name="gate", mode="gumbel")(L.Conv2D(8, 3, padding="same", name="c1")(x))
    model = K.Model(x, _head(L.Conv2D(4, 1, name="c2")(L.ReLU()(h))))
    model.get_layer("gate").arch("logits").assign([0.0, 2.0, 0.0, 0.0])  # width 0.5
    return model


def _depth():
    x = K.Input((6, 6, 4))
    y1 = L.Conv2D(4, 3, padding="same", name="c1")(x)
    y2 = L.Conv2D(4, 3, padding="same", name="c2")(y1)
    gate = GumbelDepthGate(mode="gumbel_hard", name="depth")
    model = K.Model(x, _head(gate([x, y1, y2])))
    gate.arch("logits").assign([0.0, 2.0, 0.0])  # depth 1: c2 is dropped
    return model


def _figs():
    x = K.Input((6, 6, 2))
    mask = FiGSMask(name="mask")
    h = mask(L.BatchNormalization(name="bn")(L.Conv2D(8, 3, padding="same", name="c1")(x)))
    model = K.Model(x, _head(L.Conv2D(4, 1, name="c2")(L.ReLU()(h))))
    mask.arch("logits").assign([3.0, -3.0, 3.0, 3.0, -3.0, -3.0, 3.0, -3.0])
    return model


def _cell(role, dst=False):
    def build():
        x = K.Input((6, 6, 4))
        cell = EnTranCell(["none", "skip_connect", "sep_conv_3x3"], steps=2, role=role, dst=dst,
                          name="cell")
        model = K.Model(x, _head(cell([x, x])))
        cell.arch("logits").assign(np.random.default_rng(1).normal(size=(5, 3)))
        return model
    return build


def _binary_widths():
    """BARS' binary edge between width gates of one key: the chosen composite
    narrows itself (``Sliceable``) to the chosen width."""
    x = K.Input((6, 6, 8))
    h = L.Conv2D(8, 3, padding="same", name="stem")(x)
    h = WidthGate(arch_key="w", name="g_in", mode="softmax")(h)
    op = MixedOp(list(binary.BARS_OPS), mode="gumbel", name="edge")
    out = WidthGate(arch_key="w", name="g_out", mode="softmax")(op(h))
    model = K.Model(x, _head(out))
    sl.tie_arch_variables(model)
    model.get_layer("g_in").arch("logits").assign([0.0, 0.0, 2.0, 0.0])  # width 0.75
    op.arch("logits").assign([2.0, 0.0, 0.0])  # bin_conv_3x3_shortcut
    return model


def _binary_composites():
    """Binary composites as plain layers between width gates: each narrows itself
    by its own hook (``Sliceable``)."""
    x = K.Input((6, 6, 8))
    h = L.Conv2D(8, 3, padding="same", name="stem")(x)
    for name, composite in (("g0", None), ("g1", binary.BinaryConvBN(8, 1, name="cbn")),
                            ("g2", binary.BinaryReduce(8, name="red"))):
        h = WidthGate(arch_key="w", name=name, mode="softmax")(composite(h) if composite else h)
    model = K.Model(x, _head(h))
    sl.tie_arch_variables(model)
    model.get_layer("g0").arch("logits").assign([0.0, 2.0, 0.0, 0.0])  # width 0.5
    return model


# case id -> (builder, strategy, the derivation answers expected, layer names to check)
CASES = {
    "mixed_softmax": (_edge("softmax"), "argmax", base.Replace),
    "mixed_gumbel": (_edge("gumbel", pick=1), "argmax", base.Replace),
    "mixed_gumbel_hard": (_edge("gumbel_hard", pick=2), "argmax", base.Replace),
    "mixed_uniform": (_edge("uniform", ("conv_3x3", "avg_pool_3x3")), "sample", base.Replace),
    "mixed_fair": (_edge("fair", ("conv_3x3", "avg_pool_3x3")), "sample", base.Replace),
    "mixed_none_drops_edge": (_none_in_add, "argmax", base.Drop),
    "width_gate": (_width, "argmax", base.KeepChannels),
    "depth_gate": (_depth, "argmax", base.Pick),
    "figs_mask": (_figs, "expected", base.KeepChannels),
    "entran_engine": (_cell("engine"), "argmax", base.Replace),
    "entran_transit": (_cell("transit"), "argmax", base.Replace),
    "entran_dst": (_cell("engine", dst=True), "argmax", base.Replace),
    "binary_edge_in_widths": (_binary_widths, "argmax", base.Replace),
    "binary_composites_in_widths": (_binary_composites, "argmax", base.KeepChannels),
}


def _x(model, seed=0):
    shape = model.inputs[0].shape[1:]
    return np.random.default_rng(seed).normal(size=(2, *shape)).astype(np.float32)


def _randomize_bn(model):
    """Non-trivial BatchNorm statistics, so that constants and folds are tested."""
    rng = np.random.default_rng(3)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                               if "variance" in w.name or "gamma" in w.name
                               else rng.normal(0, 0.3, w.shape).astype(np.float32)
                               for w in layer.weights])


_BUILT = {}


def _built(name):
    """Each case's model, built once per session."""
    if name not in _BUILT:
        _BUILT[name] = CASES[name][0]()
        _randomize_bn(_BUILT[name])
    return _BUILT[name]


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    _, strategy, answer = CASES[request.param]
    model = _built(request.param)
    arch = sl.choose(model, strategy, seed=1)
    return request.param, model, arch, answer


def test_choose_apply_derive_parity(case):
    name, model, arch, answer = case
    x = _x(model)
    sl.apply_architecture(model, arch)
    try:
        want = model(x, training=False).numpy()
        child = sl.derive(model, architecture=arch)
    finally:
        sl.apply_architecture(model, None)
    assert not sl.layers.search_layers(child), name
    np.testing.assert_allclose(child(x, training=False).numpy(), want, atol=ATOL, rtol=ATOL)
    assert child.count_params() < model.count_params(), name
    # the derived model is plain Keras: its config round trip gives the same model
    clone = K.Model.from_config(child.get_config(), custom_objects=_custom(child))
    clone.set_weights(child.get_weights())
    np.testing.assert_allclose(clone(x, training=False).numpy(), want, atol=ATOL, rtol=ATOL)


def _custom(model):
    return {type(l).__name__: type(l) for l in model._flatten_layers(recursive=True)}


def test_derivation_hook_answers(case):
    name, model, arch, answer = case
    for layer in sl.layers.search_layers(model):
        found = layer.derivation(arch.choices[layer.name])
        assert isinstance(found, layer.derives_to), (name, layer.name, found)
        assert base.channel_rule(layer) == (found.kind if found.kind else "opaque") or \
            isinstance(found, base.Replace)
    edge = [l for l in sl.layers.search_layers(model)]
    assert any(type(l.derivation(arch.choices[l.name])) is answer for l in edge), name


def test_choice_protocol(case):
    name, model, arch, _ = case
    for layer in sl.layers.search_layers(model):
        where = f"'{layer.name}'"
        assert len(layer.choice_names) == layer.num_choices > 0
        assert {"argmax", "sample"} <= set(layer.strategies)
        p = layer.probabilities().numpy()
        assert np.all((p >= 0) & (p <= 1)) and np.isfinite(layer.entropy().numpy()).all()
        assert np.all(layer.entropy().numpy() >= -1e-6)
        cost = layer.cost(layer._build_input_shape)
        assert isinstance(cost, sl.cost.Cost)
        choice = arch.choices[layer.name]
        assert layer.check_choice(choice) == choice
        with pytest.raises((ValueError, TypeError), match=where):
            layer.check_choice("nonsense")
        # one storage of a fixed choice: the 'choice' variable, -1 while free
        assert (layer.choice.numpy() == -1).all()
        layer.set_choice(choice)
        assert (layer.choice.numpy() >= 0).all() and bool(layer.choice_is_fixed())
        fixed = layer.probabilities().numpy()
        if layer.num_choices == fixed.shape[-1] and fixed.ndim == 1 and not isinstance(
                layer, FiGSMask):  # categorical: one-hot at the choice
            assert fixed.tolist() == np.eye(layer.num_choices)[choice].tolist()
        if isinstance(layer, FiGSMask):
            assert np.flatnonzero(fixed).tolist() == choice
        layer.set_choice(None)
        assert (layer.choice.numpy() == -1).all() and not bool(layer.choice_is_fixed())
        np.testing.assert_allclose(layer.probabilities().numpy(), p, rtol=1e-6)


def test_config_round_trip_gives_the_same_layer(case):
    name, model, arch, _ = case
    for layer in sl.layers.search_layers(model):
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config, (name, layer.name)
        shapes = tf.nest.map_structure(lambda t: t.shape, layer.input)
        clone.build(shapes)
        clone.set_weights(layer.get_weights())
        x = tf.nest.map_structure(
            lambda s: np.random.default_rng(2).normal(size=(2, *s[1:])).astype(np.float32),
            shapes)
        layer.set_choice(arch.choices[layer.name])
        clone.set_choice(arch.choices[layer.name])
        try:
            want = layer(x, training=False).numpy()
        finally:
            layer.set_choice(None)
        np.testing.assert_allclose(clone(x, training=False).numpy(), want, atol=1e-6)


def _protocol_classes():
    """Every class of ``searchlayers.layers`` with its own derivation hook."""
    import searchlayers.layers as pkg

    found = set()
    for module in (pkg.base, pkg.mixed_op, pkg.gates, pkg.figs, pkg.entrannas, pkg.binary,
                   pkg.ops, pkg.mobilenet):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and callable(getattr(cls, "derivation", None)) \
                    and not cls.__name__.startswith("_") and not inspect.isabstract(cls) \
                    and issubclass(cls, L.Layer) and cls is not base.SearchLayer:
                found.add(cls)
    return found


def test_table_covers_every_class_with_a_derivation_hook():
    covered = set()
    for name in CASES:
        for layer in _built(name)._flatten_layers(recursive=True):
            covered.add(type(layer))
            for op in getattr(layer, "ops", None) or []:
                covered.add(type(op))
    missing = {c.__name__ for c in _protocol_classes()} - {c.__name__ for c in covered}
    assert not missing, missing
    assert {MixedOp, WidthGate, GumbelDepthGate, FiGSMask, EnTranCell} <= covered


def test_derivation_of_dispatches_own_hook_then_registry():
    assert base.derivation_of(L.Dense(2)) is None and base.channel_rule(L.Dense(2)) is None
    composite = binary.BinaryConvBN(4, 1)
    assert isinstance(base.derivation_of(composite), base.Sliceable)
    assert slicing.kind(composite) == "sliceable" == base.channel_rule(composite)
    assert base.channel_rule(K.Sequential([L.Dense(2)])) == "opaque"


def test_an_undeclared_part_of_the_protocol_is_named():
    class Bare(base.SearchLayer):
        def call(self, x):
            return x

    bare = Bare(name="bare")
    for ask in (lambda: bare.num_choices, lambda: bare.derivation(0), bare.probabilities):
        with pytest.raises(NotImplementedError, match=r"Bare 'bare' does not implement \w+, "
                           "which the SearchLayer protocol declares"):
            ask()


# -- the channel-rule registry: one row per stock class it claims ---------------------------
def _merge_with(cls, **kw):
    return lambda t, other: cls(**kw)([t, other])


def _norm(t):
    """Normalization with per-channel statistics as ``adapt`` leaves them (weights),
    then with statistics given as arguments (its config, narrowed by the rule's resize)."""
    layer = L.Normalization(axis=-1)
    layer.build(t.shape)
    layer.set_weights([np.linspace(-1, 1, 8), np.linspace(1, 2, 8), np.array(16)])
    given = L.Normalization(axis=-1, mean=np.linspace(1, -1, 8), variance=np.linspace(2, 1, 8))
    return given(layer(t))


# class -> (apply(t, other) -> tensor, rank of t: 1, 2 or 3 spatial dims, expected kind)
REGISTRY = {
    L.Conv1D: (lambda t, o: L.Conv1D(6, 3, padding="same")(t), 1, "reduce"),
    L.Conv2D: (lambda t, o: L.Conv2D(6, 3, padding="same")(t), 2, "reduce"),
    L.Conv3D: (lambda t, o: L.Conv3D(6, 1)(t), 3, "reduce"),
    L.Dense: (lambda t, o: L.Dense(6)(t), 2, "reduce"),
    L.SeparableConv1D: (lambda t, o: L.SeparableConv1D(6, 3, padding="same")(t), 1, "reduce"),
    L.SeparableConv2D: (lambda t, o: L.SeparableConv2D(6, 3, padding="same")(t), 2, "reduce"),
    L.DepthwiseConv1D: (lambda t, o: L.DepthwiseConv1D(3, padding="same")(t), 1, "channelwise"),
    L.DepthwiseConv2D: (lambda t, o: L.DepthwiseConv2D(3, padding="same")(t), 2,
                        "channelwise"),
    L.BatchNormalization: (lambda t, o: L.BatchNormalization()(t), 2, "channelwise"),
    L.LayerNormalization: (lambda t, o: L.LayerNormalization(axis=1)(t), 1, "channelwise"),
    L.MaxPooling1D: (lambda t, o: L.MaxPooling1D()(t), 1, "channelwise"),
    L.MaxPooling2D: (lambda t, o: L.MaxPooling2D()(t), 2, "channelwise"),
    L.MaxPooling3D: (lambda t, o: L.MaxPooling3D()(t), 3, "channelwise"),
    L.AveragePooling1D: (lambda t, o: L.AveragePooling1D()(t), 1, "channelwise"),
    L.AveragePooling2D: (lambda t, o: L.AveragePooling2D()(t), 2, "channelwise"),
    L.AveragePooling3D: (lambda t, o: L.AveragePooling3D()(t), 3, "channelwise"),
    L.GlobalAveragePooling1D: (lambda t, o: L.GlobalAveragePooling1D(keepdims=True)(t), 1,
                               "channelwise"),
    L.GlobalAveragePooling2D: (lambda t, o: L.GlobalAveragePooling2D(keepdims=True)(t), 2,
                               "channelwise"),
    L.GlobalAveragePooling3D: (lambda t, o: L.GlobalAveragePooling3D(keepdims=True)(t), 3,
                               "channelwise"),
    L.GlobalMaxPooling1D: (lambda t, o: L.GlobalMaxPooling1D(keepdims=True)(t), 1,
                           "channelwise"),
    L.GlobalMaxPooling2D: (lambda t, o: L.GlobalMaxPooling2D(keepdims=True)(t), 2,
                           "channelwise"),
    L.GlobalMaxPooling3D: (lambda t, o: L.GlobalMaxPooling3D(keepdims=True)(t), 3,
                           "channelwise"),
    L.ZeroPadding1D: (lambda t, o: L.ZeroPadding1D()(t), 1, "channelwise"),
    L.ZeroPadding2D: (lambda t, o: L.ZeroPadding2D()(t), 2, "channelwise"),
    L.ZeroPadding3D: (lambda t, o: L.ZeroPadding3D()(t), 3, "channelwise"),
    L.Cropping1D: (lambda t, o: L.Cropping1D(1)(t), 1, "channelwise"),
    L.Cropping2D: (lambda t, o: L.Cropping2D(1)(t), 2, "channelwise"),
    L.Cropping3D: (lambda t, o: L.Cropping3D(1)(t), 3, "channelwise"),
    L.UpSampling1D: (lambda t, o: L.UpSampling1D()(t), 1, "channelwise"),
    L.UpSampling2D: (lambda t, o: L.UpSampling2D()(t), 2, "channelwise"),
    L.UpSampling3D: (lambda t, o: L.UpSampling3D()(t), 3, "channelwise"),
    L.SpatialDropout1D: (lambda t, o: L.SpatialDropout1D(0.5)(t), 1, "channelwise"),
    L.SpatialDropout2D: (lambda t, o: L.SpatialDropout2D(0.5)(t), 2, "channelwise"),
    L.SpatialDropout3D: (lambda t, o: L.SpatialDropout3D(0.5)(t), 3, "channelwise"),
    L.GaussianNoise: (lambda t, o: L.GaussianNoise(0.1)(t), 2, "channelwise"),
    L.GaussianDropout: (lambda t, o: L.GaussianDropout(0.1)(t), 2, "channelwise"),
    L.ActivityRegularization: (lambda t, o: L.ActivityRegularization(0.1)(t), 2,
                               "channelwise"),
    L.ReLU: (lambda t, o: L.ReLU(6.0)(t), 2, "channelwise"),
    L.LeakyReLU: (lambda t, o: L.LeakyReLU(0.2)(t), 2, "channelwise"),
    L.ELU: (lambda t, o: L.ELU()(t), 2, "channelwise"),
    L.ThresholdedReLU: (lambda t, o: L.ThresholdedReLU(0.1)(t), 2, "channelwise"),
    L.PReLU: (lambda t, o: L.PReLU(shared_axes=[1, 2],
                                   alpha_initializer="random_normal")(t), 2, "channelwise"),
    L.Activation: (lambda t, o: L.Activation("swish")(t), 2, "channelwise"),
    L.Dropout: (lambda t, o: L.Dropout(0.5)(t), 2, "channelwise"),
    L.AlphaDropout: (lambda t, o: L.AlphaDropout(0.5)(t), 2, "channelwise"),
    L.Add: (_merge_with(L.Add), 2, "merge"),
    L.Subtract: (_merge_with(L.Subtract), 2, "merge"),
    L.Average: (_merge_with(L.Average), 2, "merge"),
    L.Maximum: (_merge_with(L.Maximum), 2, "merge"),
    L.Minimum: (_merge_with(L.Minimum), 2, "merge"),
    L.Multiply: (_merge_with(L.Multiply), 2, "merge"),
    L.Concatenate: (_merge_with(L.Concatenate), 2, "concat"),
    L.Flatten: (lambda t, o: L.Flatten()(t), 2, "flatten"),
    L.Reshape: (lambda t, o: L.Reshape((1, 1, 8))(L.GlobalAveragePooling2D()(t)), 2,
                "channelwise"),
    L.Rescaling: (lambda t, o: L.Rescaling(0.5, offset=0.25)(t), 2, "channelwise"),
    L.Normalization: (lambda t, o: _norm(t), 2, "channelwise"),
    L.Lambda: (lambda t, o: L.Lambda(lambda v: 2.0 * v + 1.0)(t), 2, "channelwise"),
    L.Identity: (lambda t, o: L.Identity()(t), 2, "channelwise"),
}


def _larq_rows():
    import larq as lq

    plain = dict(kernel_quantizer=None, input_quantizer=None)
    return {
        lq.layers.QuantConv1D: (lambda t, o: lq.layers.QuantConv1D(6, 3, padding="same",
                                                                   **plain)(t), 1, "reduce"),
        lq.layers.QuantConv2D: (lambda t, o: lq.layers.QuantConv2D(6, 3, padding="same",
                                                                   **plain)(t), 2, "reduce"),
        lq.layers.QuantConv3D: (lambda t, o: lq.layers.QuantConv3D(6, 1, **plain)(t), 3,
                                "reduce"),
        lq.layers.QuantDense: (lambda t, o: lq.layers.QuantDense(6, **plain)(t), 2, "reduce"),
        lq.layers.QuantSeparableConv1D: (
            lambda t, o: lq.layers.QuantSeparableConv1D(6, 3, padding="same")(t), 1, "reduce"),
        lq.layers.QuantSeparableConv2D: (
            lambda t, o: lq.layers.QuantSeparableConv2D(6, 3, padding="same")(t), 2, "reduce"),
        lq.layers.QuantDepthwiseConv2D: (
            lambda t, o: lq.layers.QuantDepthwiseConv2D(3, padding="same")(t), 2,
            "channelwise"),
    }


def _tf_op_row(t, o):
    return t * tf.nn.relu6(t + 3.0) / 6.0  # hard-swish: TFOpLambda calls


def _stock_classes():
    return {cls for cls in slicing._RULES if cls.__module__.split(".")[0] in ("tf_keras", "larq")}


def test_registry_table_has_a_row_per_stock_class():
    from tf_keras.src.layers.core.tf_op_layer import TFOpLambda

    rows = set(REGISTRY) | set(_larq_rows()) | {TFOpLambda}
    missing = sorted(c.__name__ for c in _stock_classes() - rows)
    assert not missing, f"registry rules without a conformance row: {missing}"


def _registry_model(rank, rows):
    """One branch per row: conv -> FiGS mask -> row's layer -> Dense head per branch
    (a reduce layer, so dropped channels fold into its bias). Merges take a second
    tensor masked by the same group."""
    spatial = {1: (6,), 2: (6, 6), 3: (4, 4, 4)}[rank]
    x = K.Input((*spatial, 3))
    conv = {1: L.Conv1D, 2: L.Conv2D, 3: L.Conv3D}[rank]
    h = L.BatchNormalization(name="bn")(conv(8, 1, name="stem")(x))
    mask, twin = FiGSMask(group="g", name="mask"), FiGSMask(group="g", name="twin")
    m, other = mask(h), twin(conv(8, 1, name="other")(x))  # merges: one mask group
    outputs, layers = [], {}
    for cls, (apply, _, _) in rows.items():
        y = _tf_op_row(m, other) if cls is None else apply(m, other)
        if cls is not None:
            layers[cls] = next(l for l in reversed(_history(y)) if isinstance(l, cls))
        y = L.Flatten()(y) if len(y.shape) > 2 else y
        outputs.append(L.Dense(2, name=f"head_{len(outputs)}")(y))
    model = K.Model(x, outputs)
    for layer in (mask, twin):
        layer.arch("logits").assign([3.0, -3.0] * 4)  # keep channels 0, 2, 4, 6
    return model, layers


def _history(y):
    """The layers that made ``y``, newest last."""
    found, stack = [], [y]
    while stack:
        t = stack.pop()
        layer = t._keras_history.layer
        if isinstance(layer, L.InputLayer) or layer in found:
            continue
        found.insert(0, layer)
        stack.extend(tf.nest.flatten(layer._inbound_nodes[-1].keras_inputs))
    return found


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_registry_rows_slice_with_parity(rank):
    import warnings

    rows = {c: r for c, r in {**REGISTRY, **_larq_rows()}.items() if r[1] == rank}
    if rank == 2:
        rows[None] = (None, 2, "channelwise")  # the TF-op hard-swish
    model, layers = _registry_model(rank, rows)
    _randomize_bn(model)
    for cls, layer in layers.items():
        assert slicing.kind(layer) == rows[cls][2], cls.__name__
    arch = sl.choose(model, "argmax")
    assert arch.choices["mask"] == [0, 2, 4, 6]
    x = _x(model)
    sl.apply_architecture(model, arch)
    try:
        want = [y.numpy() for y in model(x, training=False)]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no layer is opaque: nothing pinned
            child = sl.derive(model, architecture=arch)
    finally:
        sl.apply_architecture(model, None)
    for got, ref in zip(child(x, training=False), want):
        np.testing.assert_allclose(got.numpy(), ref, atol=ATOL, rtol=ATOL)
    assert child.count_params() < model.count_params()
    assert child.get_layer("stem").get_weights()[0].shape[-1] == 4  # the mask's 4 channels
