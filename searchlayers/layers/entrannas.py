"""EnTranNAS / EnTranNAS-DST cells (Yang et al., 2021): ``EnTranCell``.

One ``EnTranCell`` layer is a whole DARTS-style cell: it takes the two
(preprocessed) cell inputs ``[s0, s1]`` (or one tensor for both), builds ``steps`` intermediate nodes
from every earlier state, and concatenates the last ``multiplier`` nodes. Its
architecture is one ``[edges, ops]`` variable ``arch_logits`` (edges in DARTS
order: node 0's two inputs, then node 1's three, ...), plus ``arch_betas``
``[steps]`` (per-node thresholds) with ``dst=True``.

Roles:

- ``"engine"``: every edge mixes every candidate with the coefficients of
  ``coefficients()``: ``p = softmax(alpha / tau)`` (no Gumbel noise), or with
  ``dst=True`` the sparsified ``q_hat`` (``dst_coefficients``). The
  temperature is the layer's ``temperature`` variable, annealed by
  ``TemperatureScheduler.entrannas()`` (5.0 x 0.923 per epoch).
- ``"transit"``: shares the Engine cell's ``arch_logits`` (same ``arch_key``;
  ``searchlayers.search.tie_arch_variables`` ties them) and at every step runs
  only the currently derived sub-graph (``selection()``) with its own weights:
  EnTranNAS keeps, per node, the ``top_k`` (2) incoming edges whose best
  non-``none`` op is strongest, each with that op; DST keeps every
  ``(edge, op)`` with ``q_hat > 0``. Execution is conditional: each edge is a
  ``tf.cond`` (skipped when unchosen) around a ``tf.switch_case`` over its ops
  (EnTranNAS), or one ``tf.cond`` per ``(edge, op)`` (DST, where an edge may
  keep several ops). With feature sharing the ``tf.cond`` sits on each
  ``(input state, op)`` feature instead, computed once when any node uses it,
  and an edge only selects its features: a gather from its input state's
  stacked features (EnTranNAS), a 0/1-masked sum (DST).

Options: ``feature_sharing`` (default on): op ``k`` applied to state ``i`` has
one weight set and one computed feature for every later node ``j > i``;
``bottleneck``: a 1x1 conv (+BN) reduces each state's channels by
``bottleneck_ratio`` (4) before the ops, and a 1x1 conv (+BN) restores them on
each node.

DST (EnTranNAS-DST, eqs. 7-11): per node ``j``, ``p_hat = p / max p`` over
its incoming ``(edge, op)`` entries, ``t_j = sigmoid(beta_j)``,
``q = relu(p_hat - t_j)``, ``q_hat = q / sum_op q`` per edge. ``none`` never
gets a coefficient (it is left out of the max and of ``q``), so the strongest
real op of every node always survives: ``p_hat = 1 > t_j``. An Engine cell
with ``dst_lambda > 0`` adds ``dst_lambda * mean_j(-log t_j)``
(``searchlayers.regularizers.threshold_penalty``) to the model's losses.

Derivation: ``sample_choice`` returns the JSON record ``[[ [input, op_name],
...] per node]`` (input 0/1 are the cell inputs, ``m + 2`` is node ``m``);
nodes may have any number of entries (DST). ``set_choice(record)`` fixes the
forward pass to it (Engine and Transit cells then compute exactly that
sub-graph); ``derivation(record)`` replaces it by a plain Functional sub-model
``[s0, s1] -> output`` built from copies of the chosen ops (weights inherited).

Example:
    >>> import searchlayers as sl
    >>> x = sl.keras.Input((8, 8, 4))
    >>> cell = EnTranCell(["none", "skip_connect", "sep_conv_3x3"], steps=2, role="engine")
    >>> cell([x, x]).shape
    TensorShape([None, 8, 8, 8])
    >>> len(cell.sample_choice())   # one entry list per node
    2
"""

import tensorflow as tf

from searchlayers import checks, relax
from searchlayers._keras import keras, register
from searchlayers.layers.base import Replace, SearchLayer, build_named, name_after
from searchlayers.layers.ops import BN_MOMENTUM, check_op_name, get_op

L = keras.layers
ROLES = ("engine", "transit")
NONE_OPS = ("none", "zeroise")
MAX_TOP_K = 2  # the fewest inputs of a node (node 0: the two cell inputs)
_T_MAX = 1.0 - 2.0**-20  # t < 1 in float32, so the strongest entry (p_hat == 1) survives


def edge_inputs(steps):
    """``[(node, input_index)]`` for every edge of a cell, in DARTS' order.

    Example:
        >>> edge_inputs(2)
        [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    """
    return [(node, i) for node in range(steps) for i in range(node + 2)]


def _node_slices(steps):
    start = 0
    for j in range(steps):
        yield j, start, j + 2
        start += j + 2


def dst_coefficients(probs, betas, steps, allowed=None):
    """EnTranNAS-DST coefficients ``q_hat`` ``[edges, ops]`` (eqs. 7-9).

    Args:
        probs: ``[edges, ops]`` op probabilities (``softmax(alpha / tau)``).
        betas: ``[steps]`` threshold logits, ``t_j = sigmoid(beta_j)``.
        steps: intermediate nodes of the cell.
        allowed: ``[ops]`` 1/0 mask of the ops that may be kept (``none``: 0).

    Example:
        >>> p = tf.constant([[0.1, 0.9], [0.5, 0.5]])
        >>> q = dst_coefficients(p, tf.constant([0.0]), steps=1)   # t = 0.5
        >>> q.numpy().round(3).tolist()
        [[0.0, 1.0], [0.5, 0.5]]
    """
    probs = tf.convert_to_tensor(probs, tf.float32)
    betas = tf.convert_to_tensor(betas, tf.float32)
    if allowed is None:
        allowed = tf.ones(tf.shape(probs)[-1:], probs.dtype)
    allowed = tf.cast(allowed, probs.dtype)
    rows = []
    for j, start, count in _node_slices(steps):
        seg = probs[start:start + count] * allowed
        p_hat = seg / tf.reduce_max(seg)  # eq. 7: connection normalization per node
        t = tf.minimum(tf.sigmoid(betas[j]), _T_MAX)
        q = tf.nn.relu(p_hat - t) * allowed  # eq. 8
        rows.append(tf.math.divide_no_nan(q, tf.reduce_sum(q, axis=1, keepdims=True)))  # eq. 9
    return tf.concat(rows, axis=0)


def _check_top_k(where, k):
    # every node keeps k inputs; node 0 has only the two cell inputs
    k = checks.integer(where, "top_k", k, low=1)
    if k > MAX_TOP_K:
        checks.fail(where, "top_k", k, f"an integer in [1, {MAX_TOP_K}] (the inputs node 0 has)")
    return k


def top_k_selection(probs, steps, allowed=None, k=2):
    """EnTranNAS / DARTS derivation as a 0/1 ``[edges, ops]`` mask.

    Each edge's candidate is its strongest allowed op; each node keeps the
    ``k`` edges whose candidate is strongest (ties: the lower index).

    Example:
        >>> p = tf.constant([[0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])   # one node, two edges
        >>> top_k_selection(p, 1, allowed=[0, 1, 1], k=1).numpy().tolist()
        [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    k = _check_top_k("top_k_selection", k)
    probs = tf.convert_to_tensor(probs, tf.float32)
    num_ops = probs.shape[-1]
    if allowed is None:
        allowed = tf.ones([num_ops], probs.dtype)
    allowed = tf.cast(allowed, probs.dtype)
    scored = tf.where(allowed > 0, probs, -1.0)  # probabilities are >= 0
    best_op = tf.argmax(scored, axis=1, output_type=tf.int32)
    best_p = tf.reduce_max(scored, axis=1)
    rows = []
    for _, start, count in _node_slices(steps):
        keep = tf.math.top_k(best_p[start:start + count], k).indices
        edge_on = tf.reduce_max(tf.one_hot(keep, count, dtype=probs.dtype), axis=0)
        rows.append(edge_on[:, None] * tf.one_hot(best_op[start:start + count], num_ops,
                                                  dtype=probs.dtype))
    return tf.concat(rows, axis=0)


def _split_shapes(input_shape, where):
    """``(single, [s0, s1])``: one input tensor feeds both cell inputs."""
    if isinstance(input_shape, tf.TensorShape) or (
            isinstance(input_shape, (list, tuple)) and input_shape
            and all(d is None or isinstance(d, int) for d in input_shape)):
        shape = tf.TensorShape(input_shape)
        return True, (shape, shape)
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
        raise ValueError(
            f"{where}: call it on one tensor or on a list of two [s0, s1]; got input "
            f"shape(s) {input_shape}."
        )
    return False, tuple(tf.TensorShape(s) for s in input_shape)


def _takes_training(layer):
    return layer._expects_training_arg


def _conv_bn(channels, name):
    layer = keras.Sequential(
        [L.Conv2D(channels, 1, use_bias=False),
         L.BatchNormalization(center=False, scale=False, momentum=BN_MOMENTUM)])
    name_after(layer, name)
    return layer


@register
class EnTranCell(SearchLayer):
    """An EnTranNAS Engine or Transit cell (see the module docstring).

    Args:
        candidates: op names of every edge (``searchlayers.layers.op_names()``);
            at least one that is not ``none``.
        steps: intermediate nodes (the paper's 6 nodes = 2 inputs + 4 steps).
        multiplier: how many of the last nodes the output concatenates
            (default: all ``steps``).
        role: ``"engine"`` or ``"transit"``.
        reduction: edges from the two cell inputs have stride 2.
        dst: EnTranNAS-DST (thresholds ``arch_betas``, sparse coefficients).
        feature_sharing: one weight set / feature per (input state, op).
        bottleneck: 1x1 conv reduction by ``bottleneck_ratio`` around the ops.
        bottleneck_ratio: channel reduction ratio (4 in the paper).
        top_k: incoming edges kept per node by the EnTranNAS rule (2); 1 or 2, as
            node 0 has only the two cell inputs; must stay 2 with ``dst``, where
            the thresholds choose the edges.
        dst_lambda: weight of the threshold regularizer (Engine + DST only).
        beta_init: initial threshold logit (``t = sigmoid(beta_init)``).
        arch_key, temperature, seed: see ``SearchLayer``; temperature 5.0.

    Call it on ``[s0, s1]`` (the same shape) or on one tensor ``x``, which
    then feeds both cell inputs (``s0 = s1 = x``; this lets a cell sit in a
    ``Sequential`` model). The output has ``multiplier * channels`` channels
    (half the resolution when ``reduction``).
    """

    def __init__(self, candidates, steps=4, multiplier=None, role="engine", reduction=False,
                 dst=False, feature_sharing=True, bottleneck=False, bottleneck_ratio=4,
                 top_k=2, dst_lambda=0.0, beta_init=0.0, arch_key=None, temperature=5.0,
                 seed=None, **kwargs):
        super().__init__(arch_key=arch_key, temperature=temperature, seed=seed, **kwargs)
        where = f"EnTranCell '{self.name}'"
        self.candidates = checks.sequence(where, "candidates", candidates,
                                          what="a list of op names")
        for name in self.candidates:
            check_op_name(name, where=where)
        checks.distinct(where, "candidates", self.candidates, "distinct op names")
        if all(c in NONE_OPS for c in self.candidates):
            raise ValueError(f"{where}: needs a candidate other than 'none', got {self.candidates}.")
        self.role = checks.choice(where, "role", role, ROLES)
        self.steps = checks.integer(where, "steps", steps, low=1)
        multiplier = checks.integer(where, "multiplier", multiplier, low=1, none_ok=True)
        self.multiplier = self.steps if multiplier is None else multiplier
        if self.multiplier > self.steps:
            raise ValueError(f"{where}: need 1 <= multiplier <= steps; got steps={steps}, "
                             f"multiplier={multiplier}.")
        self.top_k = _check_top_k(where, top_k)
        self.bottleneck_ratio = checks.integer(where, "bottleneck_ratio", bottleneck_ratio,
                                               low=1)
        self.dst_lambda = checks.number(where, "dst_lambda", dst_lambda, low=0)
        self.beta_init = checks.number(where, "beta_init", beta_init)
        self.reduction = checks.boolean(where, "reduction", reduction)
        self.dst = checks.boolean(where, "dst", dst)
        # DST replaces the top-k rule by learned thresholds (paper sec. 2.4, eq. 8; no
        # public code to follow), so a top_k with dst would be silently ignored: refuse it.
        if self.dst and self.top_k != 2:
            checks.fail(where, "top_k", top_k, "2 (the default) with dst=True, where the "
                        "thresholds choose the edges")
        self.feature_sharing = checks.boolean(where, "feature_sharing", feature_sharing)
        self.bottleneck = checks.boolean(where, "bottleneck", bottleneck)
        self.edges = edge_inputs(self.steps)
        self._allowed = [0.0 if c in NONE_OPS else 1.0 for c in self.candidates]
        # (weight set, op) -> layer, flat: index w * num_ops + k; None for 'none'.
        self.ops = []
        self.reducers = []
        self.restorers = []

    # -- structure ------------------------------------------------------------------
    @property
    def choice_names(self):
        return list(self.candidates)

    @property
    def num_ops(self):
        return len(self.candidates)

    @property
    def num_edges(self):
        return len(self.edges)

    def _unit(self, e):
        """Weight set of edge ``e``: its input state (sharing) or the edge itself."""
        return self.edges[e][1] if self.feature_sharing else e

    def _stride(self, state):
        return 2 if self.reduction and state < 2 else 1

    def op(self, e, k):
        """The layer that applies candidate ``k`` on edge ``e`` (None for ``none``)."""
        return self.ops[self._unit(e) * self.num_ops + k]

    def build(self, input_shape):
        where = f"EnTranCell '{self.name}'"
        self._single, (s0, s1) = _split_shapes(input_shape, where)
        if s0[1:] != s1[1:] or s0.rank != 4 or None in s0[1:]:
            raise ValueError(
                f"{where}: the two inputs need the same known NHWC shape; got {s0} and {s1}."
            )
        self.channels = int(s0[-1])
        self.op_channels = max(1, self.channels // self.bottleneck_ratio) if self.bottleneck \
            else self.channels
        h, w = int(s0[1]), int(s0[2])
        s = 2 if self.reduction else 1
        self._node_hw = (-(-h // s), -(-w // s))
        self._state_shapes = [[None, h, w, self.channels]] * 2 + \
            [[None, *self._node_hw, self.channels]] * self.steps
        # states 0 .. steps feed ops; the last node only feeds the output
        n_feed = self.steps + 1
        if self.bottleneck:
            for i in range(n_feed):
                layer = _conv_bn(self.op_channels, f"{self.name}_reduce{i}")
                build_named(layer, self._state_shapes[i])
                self.reducers.append(layer)
            for j in range(self.steps):
                layer = _conv_bn(self.channels, f"{self.name}_restore{j}")
                build_named(layer, [None, *self._node_hw, self.op_channels])
                self.restorers.append(layer)
        units = range(n_feed) if self.feature_sharing else range(self.num_edges)
        ops = []
        for u in units:
            state = u if self.feature_sharing else self.edges[u][1]
            in_shape = self._op_input_shape(state)
            for name in self.candidates:
                if name in NONE_OPS:
                    ops.append(None)
                    continue
                layer = get_op(name, self.op_channels, self._stride(state), where=where,
                               scope=f"{self.name}_u{u}")
                build_named(layer, in_shape)
                ops.append(layer)
        self.ops = ops
        self.add_arch_weight("logits", [self.num_edges, self.num_ops])
        if self.dst:
            self.add_arch_weight("betas", [self.steps],
                                 initializer=keras.initializers.Constant(self.beta_init))
        # a fixed choice: the 0/1 [edges, ops] mask of its record (-1s while free)
        self.add_choice_weight([self.num_edges, self.num_ops], tf.float32)
        super().build(input_shape)

    def _op_input_shape(self, state):
        return [None, *self._state_shapes[state][1:3], self.op_channels]

    def compute_output_shape(self, input_shape):
        _, (s0, _) = _split_shapes(input_shape, f"EnTranCell '{self.name}'")
        batch = s0[0]
        return tf.TensorShape([batch, *self._node_hw, self.multiplier * self.channels])

    # -- architecture -----------------------------------------------------------------
    def _probs(self, logits=None):
        logits = self.arch("logits") if logits is None else logits
        return relax.softmax(logits, self.temperature)

    def probabilities(self):
        """``softmax(alpha / tau)`` per edge, ``[edges, ops]``."""
        return self._probs()

    def coefficients(self, logits=None):
        """The Engine cell's mixing coefficients ``[edges, ops]``: ``p``, or
        ``q_hat`` with ``dst=True``."""
        probs = self._probs(logits)
        if not self.dst:
            return probs
        return dst_coefficients(probs, self.arch("betas"), self.steps, self._allowed)

    def thresholds(self):
        """``t_j = sigmoid(beta_j)`` per node (DST only)."""
        if not self.dst:
            raise ValueError(f"EnTranCell '{self.name}' has no thresholds (dst=False).")
        return tf.sigmoid(self.arch("betas"))

    def selection(self, logits=None):
        """The derived sub-graph as a 0/1 ``[edges, ops]`` mask (no fixed choice)."""
        if self.dst:
            return tf.cast(self.coefficients(logits) > 0, tf.float32)
        return top_k_selection(self._probs(logits), self.steps, self._allowed, self.top_k)

    def _mask(self):
        return tf.where(self.choice_is_fixed(), self.choice, self.selection())

    # -- forward ----------------------------------------------------------------------
    def _apply(self, layer, x, training):
        return layer(x, training=training) if _takes_training(layer) else layer(x)

    def _zeros(self, like):
        shape = tf.concat([tf.shape(like)[:1], [*self._node_hw, self.op_channels]], 0)
        return tf.zeros(shape, like.dtype)

    def call(self, inputs, training=None):
        s0, s1 = inputs if isinstance(inputs, (list, tuple)) else (inputs, inputs)
        states, reduced, features, stacks = [s0, s1], {}, {}, {}

        def source(i):
            if i not in reduced:
                x = states[i]
                reduced[i] = self._apply(self.reducers[i], x, training) if self.bottleneck else x
            return reduced[i]

        engine = self.role == "engine"
        if engine:
            coeff = tf.where(self.choice_is_fixed(), self.choice, self.coefficients())
        else:
            mask = self._mask()
            needed = self._needed(mask) if self.feature_sharing else None

        def feature(e, k):
            """The output of op ``k`` on edge ``e``; cached per weight set."""
            x = source(self.edges[e][1])
            if not engine and not self.feature_sharing:
                # inside this edge's branch; each (edge, op) runs in one branch only
                return self._apply(self.op(e, k), x, training)
            key = (self._unit(e), k)
            if key not in features:
                if engine:
                    features[key] = self._apply(self.op(e, k), x, training)
                else:  # transit + sharing: computed only when some node uses it
                    features[key] = tf.cond(
                        needed[self.edges[e][1]][k] > 0,
                        lambda: self._apply(self.op(e, k), x, training),
                        lambda: self._zeros(x),
                    )
            return features[key]

        live = [k for k in range(self.num_ops) if self._allowed[k]]
        for j, start, count in _node_slices(self.steps):
            terms = []
            for e in range(start, start + count):
                if engine:
                    terms += [feature(e, k) * tf.cast(coeff[e, k], s0.dtype) for k in live]
                else:
                    terms.append(self._transit_edge(e, mask, live, feature, source, stacks))
            node = tf.add_n(terms)
            if self.bottleneck:
                node = self._apply(self.restorers[j], node, training)
            states.append(node)
        if engine and self.dst and self.dst_lambda > 0:
            from searchlayers.layers.base import threshold_penalty

            self.add_loss(self.dst_lambda * threshold_penalty(self.arch("betas")))
        kept = states[-self.multiplier:]
        return kept[0] if len(kept) == 1 else tf.concat(kept, axis=-1)

    def _needed(self, mask):
        """``[states][ops]``: whether any node uses op ``k`` on state ``i``."""
        rows = {}
        for e, (_, i) in enumerate(self.edges):
            rows[i] = mask[e] if i not in rows else tf.maximum(rows[i], mask[e])
        return rows

    def _transit_edge(self, e, mask, live, feature, source, stacks):
        """Edge ``e`` of a Transit cell: its chosen ops on its input (or zeros)."""
        x = source(self.edges[e][1])
        zeros = lambda: self._zeros(x)  # noqa: E731
        row = mask[e]
        if self.feature_sharing:
            # The features are computed (or zeros) already, each under its own
            # tf.cond: an edge only selects them. A tf.cond / switch_case per
            # edge or (edge, op) for that skipped nothing, and tracing and
            # instantiating their branches was most of the first step
            # (benchmarks/transit_edges).
            if self.dst:  # several ops: a 0/1-masked sum
                return tf.add_n([feature(e, k) * tf.cast(row[k] > 0, x.dtype) for k in live])
            return self._take(e, row, live, feature, stacks)
        if self.dst:  # any number of ops per edge: one cond per (edge, op)
            return tf.add_n([tf.cond(row[k] > 0, lambda k=k: feature(e, k), zeros)
                             for k in live])
        # one op per edge: skip the edge, else run only its chosen op
        branches = [zeros] * self.num_ops  # 'none' is never chosen
        for k in live:
            branches[k] = lambda k=k: feature(e, k)
        index = tf.argmax(row, output_type=tf.int32)
        return tf.cond(
            tf.reduce_max(row) > 0, lambda: tf.switch_case(index, branches), zeros
        )

    def _take(self, e, row, live, feature, stacks):
        """The one chosen shared feature of edge ``e`` (zeros when the edge is
        off), gathered from its input state's ``[zeros, op_k ...]`` stack (made
        once per call in ``stacks``): one copy per edge, where a masked sum
        multiplies every op's feature (1.00-1.15x steady-step time)."""
        i = self.edges[e][1]
        if i not in stacks:
            ops = [feature(e, k) for k in live]
            stacks[i] = tf.stack([self._zeros(ops[0])] + ops)
        row = tf.gather(row, live)
        index = tf.where(tf.reduce_max(row) > 0, tf.argmax(row, output_type=tf.int32) + 1, 0)
        return tf.gather(stacks[i], index)

    # -- protocol ---------------------------------------------------------------------
    def sample_choice(self, strategy="argmax", seed=None):
        """The derived sub-graph as ``[[ [input, op_name], ... ] per node]``.

        ``"argmax"``: the EnTranNAS / DST rule on the current logits;
        ``"sample"``: the same rule on Gumbel-perturbed logits.
        """
        logits = self.arch("logits")
        if strategy == "sample":
            seed = [self.seed, 0 if seed is None else int(seed)]
            logits = logits + relax.gumbel_noise(tf.shape(logits), seed)
        elif strategy != "argmax":
            raise ValueError(
                f"EnTranCell '{self.name}': unknown strategy {strategy!r}; "
                "allowed: 'argmax', 'sample'."
            )
        return self._record(self.selection(logits).numpy())

    def _record(self, mask):
        record = []
        for j, start, count in _node_slices(self.steps):
            record.append([
                [self.edges[e][1], self.candidates[k]]
                for e in range(start, start + count)
                for k in range(self.num_ops) if mask[e][k] > 0
            ])
        return record

    def check_choice(self, choice):
        """``choice`` if it is a valid record of this cell (see ``choice_mask_of``)."""
        where = f"EnTranCell '{self.name}'"
        try:
            self.choice_mask_of(choice)
        except (TypeError, ValueError, IndexError) as error:
            if str(error).startswith(where):
                raise
            checks.fail(where, "choice", choice, f"a list of {self.steps} nodes, each a "
                        "list of [input, op_name] pairs")
        return choice

    def choice_mask_of(self, record):
        """The 0/1 ``[edges, ops]`` mask of a record (validated)."""
        where = f"EnTranCell '{self.name}'"
        if not isinstance(record, (list, tuple)) or len(record) != self.steps:
            raise ValueError(
                f"{where}: a choice is a list of {self.steps} nodes, each a list of "
                f"[input, op_name] pairs; got {record!r}."
            )
        mask = [[0.0] * self.num_ops for _ in self.edges]
        for j, (_, start, _) in zip(range(self.steps), _node_slices(self.steps)):
            entries = record[j]
            if not entries:
                raise ValueError(f"{where}: node {j} of choice {record!r} has no input.")
            for entry in entries:
                i, name = entry
                if not 0 <= int(i) < j + 2:
                    raise ValueError(
                        f"{where}: node {j} can take inputs 0..{j + 1}, got {i} in {record!r}."
                    )
                if name not in self.candidates or name in NONE_OPS:
                    raise ValueError(
                        f"{where}: op {name!r} of node {j} is not a candidate other than "
                        f"'none' ({self.candidates})."
                    )
                mask[start + int(i)][self.candidates.index(name)] = 1.0
        if not self.dst and any(sum(row) > 1 for row in mask):
            raise ValueError(
                f"{where}: choice {record!r} has several ops on one edge; only dst=True "
                "cells allow that."
            )
        return mask

    def encode_choice(self, choice):
        return self.choice_mask_of(choice)

    def decode_choice(self, value):
        return self._record(value)

    def derivation(self, choice):
        """``Replace`` by a Functional ``[s0, s1] -> output`` sub-model of the
        chosen sub-graph (``x -> output`` when the cell was called on one tensor)."""
        return Replace(self._sub_model(self.choice_mask_of(choice)))

    def _sub_model(self, mask):
        from searchlayers.layers.base import copy_layer

        if self._single:  # one input feeds both states, as in the supernet
            inputs = keras.Input(self._state_shapes[0][1:], name=f"{self.name}_in")
            states = [inputs, inputs]
        else:
            inputs = [keras.Input(self._state_shapes[i][1:], name=f"{self.name}_in{i}")
                      for i in range(2)]
            states = list(inputs)
        reduced, features = {}, {}
        for j, start, count in _node_slices(self.steps):
            terms = []
            for e in range(start, start + count):
                i = self.edges[e][1]
                for k in range(self.num_ops):
                    if not mask[e][k]:
                        continue
                    if i not in reduced:
                        reduced[i] = states[i] if not self.bottleneck else copy_layer(
                            self.reducers[i], self._state_shapes[i], f"{self.name}_reduce{i}"
                        )(states[i])
                    key = (self._unit(e), k)
                    if key not in features:
                        layer = copy_layer(self.op(e, k), self._op_input_shape(i),
                                           f"{self.name}_u{key[0]}_{self.candidates[k]}")
                        features[key] = layer(reduced[i])
                    terms.append(features[key])
            node = terms[0] if len(terms) == 1 else L.Add(name=f"{self.name}_node{j}")(terms)
            if self.bottleneck:
                node = copy_layer(self.restorers[j], [None, *self._node_hw, self.op_channels],
                                  f"{self.name}_restore{j}")(node)
            states.append(node)
        kept = states[-self.multiplier:]
        out = kept[0] if len(kept) == 1 else L.Concatenate(name=f"{self.name}_out")(kept)
        return keras.Model(inputs, out, name=f"{self.name}_derived")

    def cost(self, input_shape=None):
        """Expected cost: bottleneck convs always; each (weight set, op) weighted by
        the probability that some node uses it, ``1 - prod_e (1 - c_e)`` with the
        Engine coefficients (or the transit selection)."""
        from searchlayers import cost as cost_lib

        weights = self.coefficients() if self.role == "engine" else self._mask()
        total = cost_lib.Cost.zero()
        for layer, shape in zip(self.reducers, self._state_shapes):
            total = total + cost_lib.layer_cost(layer, shape)
        for layer in self.restorers:
            total = total + cost_lib.layer_cost(layer, [None, *self._node_hw, self.op_channels])
        unused = {}
        for e in range(self.num_edges):
            for k in range(self.num_ops):
                if self.op(e, k) is not None:
                    key = (self._unit(e), k)
                    unused[key] = unused.get(key, 1.0) * (1.0 - weights[e, k])
        for (u, k), off in unused.items():
            state = u if self.feature_sharing else self.edges[u][1]
            op = self.ops[u * self.num_ops + k]
            total = total + cost_lib.layer_cost(op, self._op_input_shape(state)) * (1.0 - off)
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            candidates=list(self.candidates), steps=self.steps, multiplier=self.multiplier,
            role=self.role, reduction=self.reduction, dst=self.dst,
            feature_sharing=self.feature_sharing, bottleneck=self.bottleneck,
            bottleneck_ratio=self.bottleneck_ratio, top_k=self.top_k,
            dst_lambda=self.dst_lambda, beta_init=self.beta_init,
        )
        return config


__all__ = ["EnTranCell", "dst_coefficients", "edge_inputs", "top_k_selection"]
