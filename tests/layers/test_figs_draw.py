"""One draw for all the masks of a model (``figs_draw``): FiGS eq. 2 from the
draw's seed, groups, steps, a new draw per model call (never a stale one), call
order, fixed choices, tying parts, resuming."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import relax
from searchlayers.layers.figs_draw import draw_jointly
from searchlayers.transforms import insert_masks
from test_derive_figs import small_resnet

K = sl.keras


@pytest.fixture(scope="module")
def base():
    return small_resnet()


def _masked(base, seed=0, **kwargs):
    """``insert_masks`` (which ties the model: one draw) with random logits near 0
    at temperature 0.5, so the masks vary with the noise."""
    model = insert_masks(base, **kwargs)
    rng = np.random.default_rng(seed)
    masks = sl.layers.figs_masks(model)
    for m in masks:
        m.arch("logits").assign(rng.normal(0.0, 0.5, m.channels).astype("f"))
        m.temperature.assign(0.5)
    return model, masks


def _reference(masks, step):
    """FiGS eq. 2 for every mask from the draw's noise: one Logistic noise vector
    over all masks' channels, seeded ``[first mask's seed, step]``; a group's
    members take their first member's rows."""
    sizes = [m.channels for m in masks]
    noise = relax.logistic_noise([sum(sizes)], [masks[0].seed, step]).numpy()
    starts, first, out = np.cumsum([0] + sizes), {}, []
    for m, start in zip(masks, starts):
        begin = first.setdefault(id(m.arch("logits")), start)
        logits = m.arch("logits").numpy()
        out.append(1 / (1 + np.exp(-(logits + noise[begin:begin + m.channels]) / 0.5)))
    return out


def test_one_draw_is_fig_eq2_from_its_seed_and_groups_share_their_mask(base):
    model, masks = _masked(base)
    assert len({id(m.joint_draw) for m in masks}) == 1 and masks[0].joint_draw is not None
    masks = masks[0].joint_draw.masks()  # in the order a call asks for them
    step = int(masks[0].sample_step.numpy())
    got = tf.function(lambda: [m.mask(training=True, joint=True) for m in masks])()
    for m, g, want in zip(masks, got, _reference(masks, step + 1)):
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=m.name)
    groups = {}
    for m, g in zip(masks, got):
        groups.setdefault(m.group or m.name, []).append(g.numpy())
    assert sorted(len(v) for v in groups.values()) == [1, 1, 2, 2]  # two residual groups
    for values in groups.values():
        for v in values[1:]:
            np.testing.assert_allclose(v, values[0], rtol=1e-6)
    # the first mask's step counts the draws; the others' stay
    assert [int(m.sample_step.numpy()) for m in masks] == [step + 1] + [0] * (len(masks) - 1)


def test_each_model_call_draws_anew_and_gradients_reach_every_logit(base):
    model, masks = _masked(base, seed=1)
    x = tf.constant(np.random.default_rng(2).random((2, 8, 8, 1), "f"))

    @tf.function
    def twice():
        with tf.GradientTape() as tape:
            a, b = model(x, training=True), model(x, training=True)
            loss = tf.reduce_sum(tf.sin(a)) + tf.reduce_sum(tf.cos(b))
        return a, b, tape.gradient(loss, [m.arch("logits") for m in masks])

    a, b, grads = twice()
    assert np.abs(a.numpy() - b.numpy()).max() > 1e-3  # two calls: two draws
    assert sum(int(m.sample_step.numpy()) for m in masks) == 2  # not more
    assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in grads)


def test_a_draw_never_outlives_its_call(base):
    """A layer applying the last mask called first (outside the tape), a mask read
    directly: the full call under the tape still draws anew, so every logit gets a
    gradient."""
    model, masks = _masked(base, seed=6)
    order = masks[0].joint_draw.masks()
    last = order[-1].folded_into  # the layer that applies the last mask
    x = tf.constant(np.random.default_rng(7).random((2, 8, 8, 1), "f"))

    @tf.function
    def step():
        last(tf.ones([2, *last.input_shape[1:]]), training=True)
        order[-1].mask(training=True)  # e.g. logging: draws alone
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(model(x, training=True)))
        return tape.gradient(loss, [m.arch("logits") for m in masks])

    assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in step())


def test_masks_are_drawn_in_call_order(base):
    """BatchNorm-folded masks are asked for before their mask layer runs, consumer-
    folded ones after: the draw's order is the call's, so one call is one draw."""
    model, masks = _masked(base, seed=8)
    order = masks[0].joint_draw.masks()
    assert order != masks  # folding reorders them
    asked = []
    original = type(order[0].joint_draw).mask

    def spy(draw, mask):
        asked.append(mask.name)
        return original(draw, mask)

    type(order[0].joint_draw).mask = spy
    try:
        tf.function(lambda x: model(x, training=True))(tf.zeros([1, 8, 8, 1]))
    finally:
        type(order[0].joint_draw).mask = original
    assert asked == [m.name for m in order]
    assert [int(m.sample_step.numpy()) for m in order][0] == 1


def test_fixed_choice_tensor_training_flag_and_keep_one(base):
    model, masks = _masked(base, seed=3)
    masks[1].set_choice([0, 3])
    got = tf.function(lambda: masks[1].mask(training=True, joint=True))()
    np.testing.assert_array_equal(got.numpy(), masks[1].encode_choice([0, 3]))
    # a tensor flag: each branch is its own graph, the mask draws alone there
    alone = tf.function(lambda t: masks[2].mask(training=t))(tf.constant(True))
    step = int(masks[2].sample_step.numpy())
    want = relax.logistic_sigmoid(masks[2].arch("logits"), 0.5, [masks[2].seed, step])
    np.testing.assert_allclose(alone.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    kept, _ = _masked(base, keep_one=True)
    assert all(m.joint_draw is None for m in sl.layers.figs_masks(kept))


def test_tying_again_or_a_part_keeps_the_draw_and_hard_masks_draw_apart(base):
    model, masks = _masked(base)
    joint = masks[0].joint_draw
    sl.tie_arch_variables(model)
    sl.tie_arch_variables(K.Model(model.input, masks[2].output))  # a part: its masks
    assert all(m.joint_draw is joint for m in masks)  # stay in the model's draw
    x = K.Input((4,))
    soft, hard = sl.FiGSMask(name="soft"), sl.FiGSMask(hard=True, name="hard")
    draw_jointly(K.Model(x, hard(soft(x))))
    assert soft.joint_draw is None and hard.joint_draw is None  # one mask per kind: alone
    a, b, c = (sl.FiGSMask(name=n) for n in "abc")
    ya, yb, yc = a(x), b(x), c(x)
    draw_jointly(K.Model(x, [ya, yb]))
    draw_jointly(K.Model(x, [yb, yc]))  # takes b from a's draw
    assert b.joint_draw is c.joint_draw is not None and a.joint_draw is None


def test_resumed_model_continues_the_same_noise(base, tmp_path):
    model, masks = _masked(base, seed=4)
    draw = tf.function(lambda: [m.mask(training=True, joint=True) for m in masks])
    draw()
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    want = [t.numpy() for t in draw()]
    resumed, again = _masked(base, seed=5)  # other logits, until restored
    tf.train.Checkpoint(model=resumed).read(path).assert_consumed()
    got = tf.function(lambda: [m.mask(training=True, joint=True) for m in again])()
    for m, g, w in zip(again, got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-6, err_msg=m.name)


class _Block(K.layers.Layer):
    """A user's layer holding a mask: the model's graph cannot order it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense, self.mask = K.layers.Dense(4), sl.FiGSMask(name="inner")

    def call(self, x, training=None):
        return self.mask(self.dense(x), training=training)


def test_a_mask_the_graph_cannot_order_draws_alone_and_keeps_learning():
    x = K.Input((3,))
    y = sl.FiGSMask(name="outer")(K.layers.Dense(4)(_Block()(x)))
    y = sl.FiGSMask(name="last")(K.layers.Dense(4)(y))
    model = K.Model(x, y)
    sl.tie_arch_variables(model)
    inner, outer, last = sorted(sl.layers.figs_masks(model), key=lambda m: m.name)
    assert inner.joint_draw is None and outer.joint_draw is last.joint_draw is not None
    for m in (inner, outer, last):
        m.temperature.assign(0.5)
        m.arch("logits").assign(tf.zeros([4]))
    data = tf.ones([2, 3])
    for _ in range(3):  # eager steps: nothing stale from the step before
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(model(data, training=True)))
        grads = tape.gradient(loss, [m.arch("logits") for m in (inner, outer, last)])
        assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in grads)
