"""The channel-rule registry (``slicing.register_channel_rule``) and the cases of
issue 12's "Why": element-wise TF ops slice through, derivation never grows a
model, nested models get masks, FiGS + ``MixedOp(none)`` derives, and the import
graph runs downward."""

import ast
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import slicing
from searchlayers.transforms import insert_masks

K = sl.keras


def _parity(model, child, shape, atol=1e-5):
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)
    np.testing.assert_allclose(model(x, training=False).numpy(),
                               child(x, training=False).numpy(), atol=atol, rtol=1e-5)


def _force(model, keep):
    """Every mask keeps its first ``keep`` fraction of channels (one choice per group)."""
    choices = {m.name: list(range(max(1, int(keep * m.channels))))
               for m in sl.layers.figs_masks(model)}
    arch = sl.Architecture(choices)
    sl.apply_architecture(model, arch)
    return arch


def _selects(model):
    return [l.name for l in model.layers
            if isinstance(l, sl.layers.ChannelSelect) or l.name.endswith("_fixed")]


def test_tf_op_hard_swish_slices_through_instead_of_growing():
    """Issue 12's minimal case: Conv(256) -> BN -> TF-op hard-swish -> Conv(64) grew
    from 22,730 to 81,371 parameters; now the hard-swish is channel-wise."""
    x = K.Input((4, 4, 8))
    h = K.layers.BatchNormalization(name="bn")(K.layers.Conv2D(256, 1, name="c1")(x))
    h = h * tf.nn.relu6(h + 3.0) / 6.0
    y = K.layers.Conv2D(64, 1, name="c2")(h)
    base = K.Model(x, y)
    assert base.count_params() == 8 * 256 + 256 + 4 * 256 + 256 * 64 + 64
    ops = [l for l in base.layers if type(l).__name__ == "TFOpLambda"]
    assert {slicing.kind(l) for l in ops} == {"channelwise", "merge"}
    model = insert_masks(base)
    assert [m.name for m in sl.layers.figs_masks(model)] == ["c1_mask"]
    arch = _force(model, 0.5)
    child = sl.derive(model, architecture=arch)
    _parity(model, child, (4, 4, 8))
    # 128 kept: conv 8*128+128, BN 4*128, conv 128*64+64
    assert child.count_params() == 8 * 128 + 128 + 4 * 128 + 128 * 64 + 64
    assert not _selects(child)


def test_lambda_probe_and_user_registered_rule():
    class Shift(K.layers.Layer):
        def call(self, inputs):
            return inputs + 1.0

    x = K.Input((5, 5, 2))
    h = K.layers.Conv2D(6, 1, name="c1")(x)
    h = K.layers.ReLU(name="r")(h)
    h = K.layers.Lambda(lambda t: tf.square(t) - t, name="elementwise")(h)
    mixing = K.layers.Lambda(lambda t: t - tf.reduce_mean(t, -1, keepdims=True), name="mix")
    h = Shift(name="shift")(h)
    y = K.layers.Conv2D(3, 1, name="c2")(h)
    base = K.Model(x, y)
    assert slicing.kind(base.get_layer("elementwise")) == "channelwise"
    mixing(K.Input((5, 5, 6)))
    assert slicing.kind(mixing) == "opaque"  # mixes channels: the probe says so
    assert slicing.kind(base.get_layer("shift")) == "opaque"
    with pytest.warns(UserWarning, match=r"insert_masks: 1 mask\(s\) feed layers without a "
                      r"channel rule \(after c1: shift\): derive cannot drop"):  # before a search
        model = insert_masks(base)
    arch = _force(model, 0.5)
    with pytest.warns(UserWarning, match="c1_mask.*read the dropped channels: shift"):
        pinned = sl.derive(model, architecture=arch)
    # opaque: the mask is pinned (a weight-free 0/1 Rescaling), never a bigger select
    assert [l.name for l in pinned.layers if l.name.endswith("_fixed")] == ["c1_mask_fixed"]
    assert pinned.count_params() == base.count_params()
    _parity(model, pinned, (5, 5, 2))
    slicing.register_channel_rule(Shift, "channelwise")
    try:
        child = sl.derive(model, architecture=arch)
        _parity(model, child, (5, 5, 2))
        assert not _selects(child)
        assert child.get_layer("c2").get_weights()[0].shape == (1, 1, 3, 3)
    finally:
        del slicing._RULES[Shift]


def test_register_channel_rule_rejects_bad_input():
    with pytest.raises(TypeError, match="register_channel_rule: cls=.*keras.layers.Layer"):
        slicing.register_channel_rule(int, "channelwise")
    with pytest.raises(ValueError, match="rule='sideways'.*'channelwise'"):
        slicing.register_channel_rule(K.layers.Dense, "sideways")
    assert slicing.kind(K.layers.Dense(2)) == "reduce"  # left as it was


@pytest.mark.parametrize("layer, want", [
    (K.layers.Activation("softmax"), "opaque"),
    (K.layers.Activation("swish"), "channelwise"),
    (K.layers.Dropout(0.2), "channelwise"),
    (K.layers.Dropout(0.2, noise_shape=(None, 1, 1, 4)), "opaque"),
    (K.layers.Rescaling(0.5, offset=1.0), "channelwise"),
    (K.layers.Normalization(axis=-1), "channelwise"),
    (K.layers.Multiply(), "merge"),
    (K.layers.Concatenate(axis=-1), "concat"),
    (K.layers.Conv2D(4, 3, groups=2), "opaque"),
    (K.layers.DepthwiseConv2D(3, depth_multiplier=2), "opaque"),
])
def test_registry_table(layer, want):
    assert slicing.kind(layer) == want


def test_reshape_and_layer_norm_rules_follow_shapes():
    x = K.Input((6,))
    r = K.layers.Reshape((1, 1, 6))
    r(x)
    assert slicing.kind(r) == "channelwise"
    spread = K.layers.Reshape((2, 3))
    spread(x)
    assert slicing.kind(spread) == "opaque"
    over_channels, over_time = K.layers.LayerNormalization(), K.layers.LayerNormalization(axis=1)
    t = K.Input((5, 4))
    over_channels(t), over_time(t)
    assert slicing.kind(over_channels) == "opaque" and slicing.kind(over_time) == "channelwise"


def test_nested_sequential_is_inlined_and_masked():
    block = K.Sequential([K.Input((6, 6, 8)), K.layers.Conv2D(8, 3, padding="same", name="conv"),
                          K.layers.BatchNormalization(name="bn"), K.layers.ReLU()], name="block")
    x = K.Input((6, 6, 3))
    h = K.layers.ReLU()(K.layers.Conv2D(8, 3, padding="same", name="stem")(x))
    h = K.layers.Conv2D(8, 1, name="conv")(block(h))  # the same name as inside the block
    y = K.layers.Dense(3, name="head")(K.layers.GlobalAveragePooling2D()(h))
    base = K.Model(x, y)
    model = insert_masks(base)
    names = [m.name for m in sl.layers.figs_masks(model)]
    assert sorted(names) == ["block_conv_mask", "conv_mask", "stem_mask"]
    assert not [l for l in model.layers if isinstance(l, K.Model)]
    _parity(base, model, (6, 6, 3), atol=1e-6)  # all masks on: the same function
    arch = _force(model, 0.5)
    child = sl.derive(model, architecture=arch)
    _parity(model, child, (6, 6, 3))
    assert child.get_layer("block_conv").get_weights()[0].shape == (3, 3, 4, 4)


def test_subclassed_nested_model_is_a_clear_error():
    class Block(K.Model):
        def __init__(self):
            super().__init__(name="my_block")
            self.conv = K.layers.Conv2D(4, 1)

        def call(self, inputs):
            return self.conv(inputs)

    x = K.Input((4, 4, 2))
    y = K.layers.Dense(2)(K.layers.Flatten()(Block()(x)))
    with pytest.raises(TypeError, match="nested model 'my_block' \\(Block\\)"):
        insert_masks(K.Model(x, y))


def test_figs_masks_next_to_mixed_op_none_derive_by_removing_the_edge():
    x = K.Input((6, 6, 4))
    h = K.layers.ReLU()(K.layers.BatchNormalization(name="bn0")(K.layers.Conv2D(8, 1, name="c0")(x)))
    e = sl.layers.MixedOp(["conv_3x3", "none"], name="edge")(h)
    h = K.layers.Conv2D(6, 3, padding="same", name="c1")(e)
    h = K.layers.ReLU()(K.layers.BatchNormalization(name="bn1")(h))
    y = K.layers.Dense(3, name="head")(K.layers.GlobalAveragePooling2D()(h))
    model = insert_masks(K.Model(x, y))
    bn = model.get_layer("bn1")
    bn.set_weights([np.full(6, 2.0, "f"), np.linspace(-1, 1, 6).astype("f"),
                    np.full(6, -0.5, "f"), np.ones(6, "f")])
    arch = sl.choose(model)
    arch = sl.Architecture({**arch.choices, "edge": 1})  # the 'none' candidate
    child = sl.derive(model, architecture=arch)  # used to fail: 'Depth of filter must not be 0'
    sl.apply_architecture(model, arch)
    _parity(model, child, (6, 6, 4))
    kinds = {type(l).__name__ for l in child.layers}
    # nothing reads the input any more: the output is the constant head(relu(bn1(c1 bias)))
    assert not kinds & {"Conv2D", "BatchNormalization", "Dense"}


# -- the import graph ---------------------------------------------------------------------
ROOT = pathlib.Path(sl.__file__).parent


def _imports(path, top_only):
    """Modules of ``searchlayers`` (and ``examples``) that ``path`` imports."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module != "searchlayers":
                found.add(node.module)
            for a in node.names:  # ``from searchlayers import checks``: the submodule
                sub = ROOT / a.name
                if node.module == "searchlayers" and (sub.with_suffix(".py").exists()
                                                      or sub.is_dir()):
                    found.add(f"searchlayers.{a.name}")
                elif node.module == "searchlayers":
                    found.add("searchlayers")
    return {m for m in found if m.split(".")[0] in ("searchlayers", "examples")}


def _module(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_layers_import_nothing_above_them_and_nothing_imports_examples():
    modules = sorted(ROOT.rglob("*.py"))
    for path in modules:
        used = _imports(path, top_only=False)  # lazy imports inside functions too
        assert not {m for m in used if m.split(".")[0] == "examples"}, path
        if path.parent.name == "layers":
            above = {m for m in used if m in ("searchlayers.derive", "searchlayers.slicing",
                                              "searchlayers.regularizers")}
            assert not above, f"{path.name} imports {sorted(above)}"


def test_no_import_cycle_at_module_level():
    graph = {}
    for path in ROOT.rglob("*.py"):
        graph[_module(path)] = {m for m in _imports(path, top_only=True) if m != _module(path)}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in graph.get(node, ()):
            if dep not in graph:
                continue
            if state.get(dep) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(stack + [node, dep])}")
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_a_gate_pinned_by_a_residual_add_says_why():
    """A width gate whose dropped channels a residual Add still needs (its other
    branch keeps them all): the warning named no layer and blamed a missing
    channel rule (found by a user trial)."""
    inputs = K.Input((8, 8, 1))
    h = K.layers.Conv2D(8, 3, padding="same")(inputs)
    w = sl.WidthGate(widths=[0.5, 1.0], name="wg")(h)
    y = sl.MixedOp([K.layers.Conv2D(8, 3, padding="same", name="c"), "skip_connect"],
                   name="b1")(w)
    y = K.layers.GlobalAveragePooling2D()(K.layers.Add()([w, y]))
    net = K.Model(inputs, K.layers.Dense(3)(y))
    arch = {"wg": 0, "b1": 0}
    with pytest.warns(UserWarning, match=r"derive: 1 channel mask\(s\) or width gate\(s\) "
                      r"\(wg\) keep their producer's channels .*: a later layer still needs "
                      r"them \(e.g. a residual Add"):
        child = sl.derive(net, architecture=arch)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    sl.apply_architecture(net, arch)
    np.testing.assert_allclose(child(x), net(x), atol=1e-5)
