"""EnTranCell: Engine/Transit cells, feature sharing, bottleneck, DST."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers.layers.entrannas import EnTranCell, dst_coefficients, top_k_selection

K = sl.keras
OPS = ["none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"]


def _pair(dst=False, sharing=True, bottleneck=False, reduction=False, steps=3, **kw):
    """An Engine and a Transit cell sharing one key, in one model."""
    x = K.Input((8, 8, 8))
    y = K.layers.Conv2D(8, 1, name="pre")(x)
    common = dict(steps=steps, dst=dst, feature_sharing=sharing, bottleneck=bottleneck,
                  reduction=reduction, arch_key="k", **kw)
    engine = EnTranCell(OPS, role="engine", name="engine", **common)
    transit = EnTranCell(OPS, role="transit", name="transit", **common)
    model = K.Model(x, [engine([x, y]), transit([y, x])])
    sl.tie_arch_variables(model)
    logits = np.random.default_rng(0).normal(size=engine.arch("logits").shape) * 3
    engine.arch("logits").assign(logits.astype("float32"))
    return model, engine, transit


def _inputs(seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(2, 8, 8, 8)).astype("float32") for _ in range(2)]


def test_transit_shares_engine_logits():
    model, engine, transit = _pair(dst=True)
    assert transit.arch("logits") is engine.arch("logits")
    assert transit.arch("betas") is engine.arch("betas")
    assert len(sl.arch_variables(model)) == 2  # logits [E, K] + betas [steps]
    assert engine.arch("logits").shape == (9, 4) and engine.arch("betas").shape == (3,)


@pytest.mark.parametrize("dst,sharing,bottleneck,reduction", [
    (False, True, False, False), (False, False, True, True),
    (True, True, True, True), (True, False, False, False),
])
def test_transit_equals_derived_cell(dst, sharing, bottleneck, reduction):
    _, engine, transit = _pair(dst, sharing, bottleneck, reduction, steps=2)
    if dst:  # thresholds high enough to prune some connections
        engine.arch("betas").assign([-0.5, 2.0])
    record = transit.sample_choice()
    derived = transit.derivation(record).make()
    assert not any(isinstance(l, sl.SearchLayer)
                   for l in derived._flatten_layers(include_self=False, recursive=True))
    x = _inputs()
    expected = transit(x, training=False).numpy()
    np.testing.assert_allclose(derived(x, training=False).numpy(), expected, atol=1e-4)
    # the engine cell fixed to the same record computes its own derived cell
    engine.set_choice(record)
    try:
        fixed = engine(x, training=False).numpy()
    finally:
        engine.set_choice(None)
    np.testing.assert_allclose(engine.derivation(record).make()(x, training=False).numpy(), fixed,
                               atol=1e-4)


@pytest.mark.parametrize("dst,sharing", [(False, True), (False, False), (True, True)])
def test_transit_equals_eq6_by_hand(dst, sharing):
    """The Transit cell (unfixed, selection from the shared logits) computes the
    paper's eq. (6), composed here by hand from its own op layers:
    ``x_j = sum_{(i, k) in S_j} o_k(w, x_i)``, output = concat of the nodes."""
    _, engine, transit = _pair(dst, sharing, steps=3)
    if dst:
        engine.arch("betas").assign([-1.0, 0.3, 1.5])
    record = transit.sample_choice()
    x = _inputs(4)
    states = [tf.constant(x[0]), tf.constant(x[1])]
    for j, node in enumerate(record):
        terms = []
        for i, name in node:
            e = transit.edges.index((j, i))
            terms.append(transit.op(e, OPS.index(name))(states[i], training=False))
        states.append(tf.add_n(terms))
    expected = tf.concat(states[2:], axis=-1).numpy()
    np.testing.assert_allclose(transit(x, training=False).numpy(), expected, atol=1e-5)


def test_dst_threshold_step_matches_regularizer_gradient():
    """One SGD step on ``lambda * mean_j(-log sigmoid(beta_j))`` moves each beta by
    ``lr * lambda * (1 - t_j) / steps`` (hand-derived); larger lambda, larger step."""
    for lam in (0.1, 1.0):
        model, engine, _ = _pair(dst=True, dst_lambda=lam, steps=3)
        betas = engine.arch("betas")
        betas.assign([-1.0, 0.0, 2.0])
        t = 1.0 / (1.0 + np.exp(-np.array([-1.0, 0.0, 2.0])))
        with tf.GradientTape() as tape:
            model(_inputs()[0], training=True)
            loss = tf.add_n(model.losses)
        betas.assign_sub(0.5 * tape.gradient(loss, betas))
        np.testing.assert_allclose(betas.numpy(), [-1.0, 0.0, 2.0] + 0.5 * lam * (1 - t) / 3,
                                   rtol=1e-5)


def test_top2_record_and_feature_sharing_weights():
    _, engine, transit = _pair(dst=False, sharing=True)
    record = transit.sample_choice()
    assert [len(node) for node in record] == [2, 2, 2]
    assert all(op != "none" for node in record for _, op in node)
    # sharing: (n - 1) x K weight sets (states 0..steps), not |E| x K
    assert len(transit.ops) == (3 + 1) * len(OPS)
    _, e2, _ = _pair(dst=False, sharing=False)
    assert len(e2.ops) == 9 * len(OPS)
    assert e2.count_params() > engine.count_params()


def test_bottleneck_reduces_op_channels():
    _, engine, _ = _pair(bottleneck=True, bottleneck_ratio=4)
    assert engine.op_channels == 2 and len(engine.reducers) == 4 and len(engine.restorers) == 3
    op = engine.op(2, OPS.index("sep_conv_3x3"))
    assert op.layers[-2].filters == 2  # ops run at C / 4
    assert engine(_inputs()).shape == (2, 8, 8, 24)


@pytest.mark.parametrize("dst,sharing", [(False, False), (False, True), (True, True)])
def test_transit_runs_only_chosen_ops(dst, sharing):
    """Conditional execution: a chosen op's BN statistics move, an unchosen one's
    do not (with sharing, ``op(1, sep)`` is state 1's sep conv, which no node uses)."""
    _, _, transit = _pair(dst=dst, sharing=sharing)
    record = [[[0, "sep_conv_3x3"], [1, "skip_connect"]], [[2, "max_pool_3x3"], [1, "skip_connect"]],
              [[3, "sep_conv_3x3"], [0, "skip_connect"]]]
    transit.set_choice(record)
    sep = OPS.index("sep_conv_3x3")
    chosen, unchosen = transit.op(0, sep), transit.op(1, sep)

    def stats(op):
        return [w.numpy().copy() for w in op.weights if "moving_mean" in w.name]

    before = stats(chosen), stats(unchosen)
    tf.function(lambda x: transit(x, training=True))(_inputs())
    after = stats(chosen), stats(unchosen)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after[0], before[0]))
    assert all(np.array_equal(a, b) for a, b in zip(after[1], before[1]))


@pytest.mark.parametrize("dst", [False, True])
def test_transit_with_sharing_has_one_conditional_per_feature(dst):
    """With feature sharing an edge selects computed features (a gather, or a
    0/1-masked sum with DST): the only conditionals are one per (input state,
    op), none per edge or (edge, op), which made the first step slow."""
    _, _, transit = _pair(dst=dst, sharing=True)
    graph = tf.function(lambda x: transit(x, training=True)).get_concrete_function(
        [tf.TensorSpec((2, 8, 8, 8))] * 2).graph
    conds = [op for op in graph.get_operations() if op.type in ("If", "StatelessIf")]
    states, live_ops = transit.steps + 1, len(OPS) - 1  # the last node feeds no edge
    assert len(conds) == states * live_ops


@pytest.mark.parametrize("dst,sharing", [(False, True), (True, True), (False, False)])
def test_transit_training_step_equals_derived_cell(dst, sharing):
    """In training (batch statistics) the Transit cell's output and its gradient
    with respect to both inputs equal the derived cell's: what an edge selects
    (a gather, a masked sum, a conditional) passes the gradient only to its op."""
    _, engine, transit = _pair(dst, sharing, steps=3)
    if dst:
        engine.arch("betas").assign([-0.5, 2.0, 0.0])
    derived = transit.derivation(transit.sample_choice()).make()
    x = [tf.constant(v) for v in _inputs()]
    weights = tf.constant(np.random.default_rng(2).normal(size=(2, 8, 8, 24)), tf.float32)

    def output_and_grads(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x, training=True)
            loss = tf.reduce_sum(y * weights)
        return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, x)]

    got = output_and_grads(tf.function(transit))
    for a, b in zip(got, output_and_grads(derived)):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("dst", [False, True])
def test_mixed_float16_engine_and_transit_train(dst):
    """Under a mixed_float16 policy the cells train and return the compute
    dtype (their architecture state stays float32: layers.base); every logit
    gets a gradient."""
    K.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, engine, transit = _pair(dst=dst, sharing=True)
        with tf.GradientTape() as tape:
            outputs = model(_inputs()[0], training=True)
            loss = tf.add_n([tf.reduce_sum(tf.cast(y, tf.float32)) for y in outputs])
        grads = tape.gradient(loss, model.trainable_variables)
    finally:
        K.mixed_precision.set_global_policy("float32")
    assert all(y.dtype == tf.float16 for y in outputs)
    named = {v.name: g for v, g in zip(model.trainable_variables, grads)}
    assert all(g is not None for name, g in named.items() if "arch_" in name)


def test_mixed_float16_transit_runs_the_cell_sample_choice_reports():
    """At initialization the logits are within ~1e-3: read as float16 in a call
    (autocast) they tied, and the cell ran another sub-graph than
    ``sample_choice`` (float32) reports, 7.7 apart; they now stay float32."""
    K.mixed_precision.set_global_policy("mixed_float16")
    try:
        K.utils.set_random_seed(0)
        x = K.Input((8, 8, 8))
        transit = EnTranCell(OPS, steps=3, role="transit", arch_key="k", name="t")
        transit([x, x])
        inputs = [_inputs()[0]] * 2
        got = transit(inputs, training=False).numpy().astype("float32")
        derived = transit.derivation(transit.sample_choice()).make()
        expected = derived(inputs, training=False).numpy().astype("float32")
    finally:
        K.mixed_precision.set_global_policy("float32")
    np.testing.assert_allclose(got, expected, atol=0.05)


def test_top_k_selection_excludes_none():
    # steps=2: edges 0, 1 (node 0), 2, 3, 4 (node 1); ops (none, a, b)
    p = tf.constant([[0.9, 0.04, 0.06], [0.2, 0.7, 0.1],
                     [0.1, 0.3, 0.6], [0.1, 0.5, 0.4], [0.0, 0.1, 0.9]])
    mask = top_k_selection(p, 2, allowed=[0, 1, 1]).numpy()
    assert mask.tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 1]]
    mask = top_k_selection(p, 2, allowed=[0, 1, 1], k=1).numpy()
    assert mask.sum(axis=1).tolist() == [0, 1, 0, 0, 1]


def test_dst_coefficients_hand_computed():
    # steps=2: node 0 <- edges 0, 1; node 1 <- edges 2, 3, 4; ops (none, a, b)
    p = np.array([[0.2, 0.5, 0.3],
                  [0.1, 0.1, 0.8],
                  [0.6, 0.2, 0.2],
                  [0.1, 0.4, 0.5],
                  [0.0, 0.25, 0.75]], dtype="float32")
    t = np.array([0.5, 0.6], dtype="float32")
    betas = np.log(t / (1 - t))
    q_hat = dst_coefficients(p, betas, steps=2, allowed=[0, 1, 1]).numpy()
    # node 0: max (non-none) 0.8 -> p_hat a,b: e0 (.625, .375), e1 (.125, 1); t=.5
    # q: e0 (.125, 0) -> (1, 0); e1 (0, .5) -> (0, 1)
    # node 1: max 0.75 -> e2 (.267, .267) -> 0; e3 (.533, .667) -> q (0, .0667) -> (0, 1);
    #         e4 (.333, 1) -> (0, .4) -> (0, 1)
    expected = [[0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 1], [0, 0, 1]]
    np.testing.assert_allclose(q_hat, expected, atol=1e-5)
    # a lower threshold keeps more, with mixed coefficients on an edge
    q_low = dst_coefficients(p, np.log([0.25 / 0.75, 0.25 / 0.75]), 2, [0, 1, 1]).numpy()
    np.testing.assert_allclose(q_low[0], [0, 0.375 / 0.5, 0.125 / 0.5], atol=1e-5)
    assert (q_low > 0).sum() > (q_hat > 0).sum()
    # every node keeps at least one connection, even at t -> 1 (huge beta)
    q_max = dst_coefficients(p, [60.0, 60.0], 2, [0, 1, 1]).numpy()
    assert (q_max[:2] > 0).sum() >= 1 and (q_max[2:] > 0).sum() >= 1
    # the none column never survives, rows sum to 1 or 0
    assert (q_low[:, 0] == 0).all()
    np.testing.assert_allclose(np.sort(q_low.sum(1)), np.sort(q_low.sum(1).round()), atol=1e-5)


def test_dst_record_has_variable_edges_and_thresholds_move_with_lambda():
    def betas_after(lam):
        """Three SGD steps on the arch variables, data loss times zero."""
        model, engine, _ = _pair(dst=True, dst_lambda=lam, steps=2)
        betas = engine.arch("betas")
        for _ in range(3):
            with tf.GradientTape() as tape:
                out = model(_inputs()[0], training=True)
                loss = tf.reduce_mean(out[0]) * 0.0 + tf.add_n(model.losses or [0.0])
            betas.assign_sub(0.5 * tape.gradient(loss, betas))
        return betas.numpy()

    assert (betas_after(1.0) > betas_after(0.0) + 0.1).all()  # lambda raises thresholds
    _, engine, transit = _pair(dst=True)
    engine.arch("betas").assign([-3.0, 0.5, 4.0])
    record = transit.sample_choice()
    assert all(len(node) >= 1 for node in record)
    assert len(set(len(node) for node in record)) > 1  # not a fixed top-2 topology
    assert sum(len(n) for n in record) == int(tf.reduce_sum(transit.selection()))


def test_dst_regularizer_only_from_engine():
    model, engine, _ = _pair(dst=True, dst_lambda=0.2)
    model(_inputs()[0])
    assert len(model.losses) == 1
    expected = 0.2 * sl.regularizers.threshold_penalty(engine.arch("betas"))
    np.testing.assert_allclose(float(model.losses[0]), float(expected), rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(role="motor"), r"EnTranCell 'bad'.*'motor'.*allowed: 'engine', 'transit'"),
    (dict(steps=0), r"EnTranCell 'bad': steps must be an integer >= 1, got 0"),
    (dict(steps=2, multiplier=3), r"1 <= multiplier <= steps.*multiplier=3"),
    (dict(top_k=0), r"'bad': top_k must be an integer >= 1, got 0"),
    (dict(bottleneck_ratio=0), r"'bad': bottleneck_ratio must be an integer >= 1, got 0"),
    (dict(dst_lambda=-0.1), r"'bad': dst_lambda must be a finite number >= 0, got -0.1"),
    (dict(temperature=0.0), r"'bad'.*temperature"),
])
def test_bad_arguments_name_layer_value_and_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnTranCell(OPS, name="bad", **kwargs)


def test_bad_candidates_and_inputs():
    with pytest.raises(ValueError, match="other than 'none'"):
        EnTranCell(["none"], name="bad")
    with pytest.raises(ValueError, match=r"'bad'.*distinct"):
        EnTranCell(["skip_connect", "skip_connect"], name="bad")
    with pytest.raises(ValueError, match=r"conv_9x9"):
        EnTranCell(["skip_connect", "conv_9x9"], name="bad")
    a, b = K.Input((8, 8, 4)), K.Input((8, 8, 6))
    with pytest.raises(ValueError, match=r"'bad'.*same known NHWC shape"):
        EnTranCell(OPS, name="bad")([a, b])
    with pytest.raises(ValueError, match=r"'bad'.*one tensor or on a list of two"):
        EnTranCell(OPS, name="bad")([a, a, a])
    cell = EnTranCell(OPS, steps=1, name="plain")
    cell(a)
    with pytest.raises(ValueError, match=r"'plain' has no thresholds \(dst=False\)"):
        cell.thresholds()
    with pytest.raises(ValueError, match=r"unknown strategy 'best'.*'argmax', 'sample'"):
        cell.sample_choice("best")
    with pytest.raises(ValueError, match=r"op 'none' of node 0 is not a candidate"):
        cell.set_choice([[[0, "none"]]])
    with pytest.raises(ValueError, match=r"a list of 1 nodes"):
        cell.set_choice([[[0, "skip_connect"]], [[0, "skip_connect"]]])


def test_bad_choices_name_node_and_input():
    _, engine, _ = _pair()
    with pytest.raises(ValueError, match="node 1 can take inputs 0..2"):
        engine.set_choice([[[0, "skip_connect"]], [[3, "skip_connect"]], [[0, "skip_connect"]]])
    with pytest.raises(ValueError, match="several ops on one edge"):
        engine.set_choice([[[0, "skip_connect"], [0, "sep_conv_3x3"]], [[0, "skip_connect"]],
                           [[0, "skip_connect"]]])
    with pytest.raises(ValueError, match="has no input"):
        engine.set_choice([[], [[0, "skip_connect"]], [[0, "skip_connect"]]])


def test_config_round_trip():
    cell = EnTranCell(OPS, steps=2, role="transit", dst=True, bottleneck=True, arch_key="n",
                      temperature=1.0, dst_lambda=0.2, name="c")
    clone = EnTranCell.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()


def test_cost_counts_only_selected_ops_in_transit():
    _, engine, transit = _pair(dst=False)
    full = float(engine.cost().float_macs)
    sub = float(transit.cost().float_macs)
    assert 0 < sub and np.isfinite(full)
    transit.set_choice([[[0, "skip_connect"]], [[0, "skip_connect"]], [[0, "skip_connect"]]])
    assert float(transit.cost().float_macs) < sub


def test_sequential_single_input_search_and_derive():
    """One tensor feeds both cell inputs, so cells stack in a Sequential model;
    derive gives a Sequential whose output equals the fixed supernet's."""
    model = K.Sequential([
        K.Input((8, 8, 1)),
        K.layers.Conv2D(4, 3, padding="same"),
        EnTranCell(OPS, steps=2, role="engine", dst=True, dst_lambda=0.1, arch_key="n",
                   name="engine"),
        EnTranCell(OPS, steps=2, role="transit", dst=True, arch_key="n", name="transit"),
        K.layers.GlobalAveragePooling2D(),
        K.layers.Dense(10),
    ])
    assert model.output_shape == (None, 10) and model.layers[1].output_shape == (None, 8, 8, 8)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 8, 8, 1)).astype("float32"), rng.integers(0, 10, 16)
    sl.tie_arch_variables(model)  # the transit cell reads the engine's logits
    model.compile(sl.joint_optimizer(K.optimizers.legacy.SGD(0.05)),
                  K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(sl.arch_variables(model)) == 2
    arch = sl.choose(model)
    derived = sl.derive(model, architecture=arch)
    assert isinstance(derived, K.Sequential)
    sl.apply_architecture(model, arch)
    try:
        expected = model(x[:4], training=False).numpy()
    finally:
        sl.apply_architecture(model, None)
    np.testing.assert_allclose(derived(x[:4], training=False).numpy(), expected, atol=1e-4)


def test_docstring_examples_run():
    import doctest

    import models.entrannas
    import searchlayers.layers.entrannas

    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for module in (searchlayers.layers.entrannas, models.entrannas):
        result = doctest.testmod(module, optionflags=flags)
        assert result.attempted >= 5 and result.failed == 0, module.__name__
