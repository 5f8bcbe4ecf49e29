"""How decided a search is: entropy, largest probability, argmax stability.

A search has *chosen* when every architecture distribution has most of its
mass on one choice and that choice has stopped changing. For each group of
search layers (an ``arch_key``, or one layer without a key; shared groups
count once, single-path layers without logits are left out) this module
reports:

- ``entropy``: Shannon entropy divided by its maximum (``log n`` for ``n``
  choices, ``log 2`` per FiGS mask channel), averaged over the layer's
  distributions (an EnTranNAS cell has one per edge): 1 = uniform, 0 = one-hot;
- ``max_prob``: the largest probability, averaged over the distributions
  (for a mask channel ``max(p, 1 - p)``);
- ``flips``: the fraction of the last ``window`` architecture steps in which
  the layer's argmax (every distribution's, jointly: the derived sub-graph)
  changed, as recorded by a ``DecisionTracker`` during ``fit``; ``None`` when
  no tracker has run;
- ``decided``: every distribution's largest probability is at least
  ``CATEGORICAL_PROB`` (a categorical choice: MixedOp, gates, cells) or
  ``MASK_PROB`` (a mask channel: near 0 or 1), and ``flips`` (when known) is at
  most ``MAX_FLIPS``;
- ``decided_share``: the fraction of the layer's distributions (edges, mask
  channels) whose largest probability clears that bar (``summary``: over all
  of them, e.g. the share of a FiGS network's channels at 0 / 1).

A mask channel is at 0 / 1 when ``P(mask = 1) <= 0.01`` or ``>= 0.99``
(``MASK_PROB``): ``|logit| >= log 99 ~ 4.6``, so the Logistic-noise mask
sampled in training (``FiGSMask``) equals the derived ``1[logit > 0]`` in 99
steps of 100; the search trains the network it derives.

A distribution is *Bernoulli* (independent per entry) when its layer defines
its own ``entropy()`` (FiGS masks; the same convention as
``searchlayers.regularizers.layer_entropy``); otherwise it is categorical over
its last axis.

``DecisionTracker`` is the cheap callback that records the argmax history and
prints, when ``fit`` ends, a one-screen summary and an
``UndecidedSearchWarning`` saying what to change when the search ended
undecided. ``SearchModel.fit`` adds one unless given one.

Example:
    >>> import searchlayers as sl
    >>> op = sl.MixedOp(["skip_connect", "none"], name="e")
    >>> m = sl.keras.Sequential([sl.keras.Input((4, 4, 2)), op])
    >>> d = layer_decision(op)
    >>> round(d["entropy"], 3), round(d["max_prob"], 2), d["decided"]
    (1.0, 0.5, False)
    >>> summary(m)["undecided"]
    1
"""

import collections
import math
import warnings
import weakref

import numpy as np
import tensorflow as tf

from searchlayers import callback_state, checks
from searchlayers import regularizers as reg
from searchlayers._keras import keras, register
from searchlayers.layers.base import SearchLayer

CATEGORICAL_PROB = 0.6  # the bar for DARTS edges (8 ops: uniform is 0.125)
MASK_PROB = 0.99  # a mask channel is decided when p <= 0.01 or p >= 0.99 (|logit| >= log 99)
MAX_FLIPS = 0.1  # at most 1 argmax change in 10 steps over the window
WINDOW = 50

# layer -> deque of "argmax changed" booleans, filled by DecisionTracker; weak
# so that a discarded model frees its history.
_FLIPS = weakref.WeakKeyDictionary()


class UndecidedSearchWarning(UserWarning):
    """A search ended with distributions still close to uniform or still flipping."""


def is_bernoulli(layer):
    """True when ``layer``'s probabilities are independent per entry (FiGS masks).

    Example:
        >>> import searchlayers as sl
        >>> is_bernoulli(sl.FiGSMask()), is_bernoulli(sl.MixedOp(["skip_connect", "none"]))
        (True, False)
    """
    # every SearchLayer has the categorical entropy; a Bernoulli layer overrides it
    own = getattr(type(layer), "entropy", None)
    return callable(own) and own is not SearchLayer.entropy


def _rows(layer):
    """``[distributions, choices]`` probabilities of ``layer`` (float64)."""
    p = np.asarray(layer.probabilities(), dtype=np.float64)
    if is_bernoulli(layer):
        p = p.reshape(-1, 1)
        return np.concatenate([p, 1.0 - p], axis=1)
    return p.reshape(-1, p.shape[-1])


def argmax(layer):
    """The layer's discrete pick now: a tuple of ints, one per distribution.

    Example:
        >>> import searchlayers as sl
        >>> op = sl.MixedOp(["skip_connect", "none"]); _ = op(np.ones([1, 2, 2, 1], "float32"))
        >>> _ = op.arch("logits").assign([0.0, 2.0])   # 'none' leads
        >>> argmax(op)
        (1,)
    """
    return tuple(_pick(layer).numpy().tolist())


def _pick(layer):
    """``argmax``'s pick as an int64 tensor (eager, or inside ``_argmax_function``).

    The argmax of each row of ``_rows``: a Bernoulli layer's rows are
    ``(p, 1 - p)``, so its pick is 1 (dropped) where ``p < 0.5``."""
    p = tf.convert_to_tensor(layer.probabilities())
    if is_bernoulli(layer):
        return tf.cast(tf.reshape(p, [-1]) < 0.5, tf.int64)
    return tf.argmax(tf.reshape(p, [-1, tf.shape(p)[-1]]), axis=-1)


def _argmax_function(layers):
    """``() -> [argmax(layer) for layer in layers]`` as one compiled read: called
    every training step, so eager per-layer ops (tens of ms per step on a small
    supernet, as much as the step itself) are traced once instead."""
    compiled = tf.function(lambda: [_pick(layer) for layer in layers], autograph=False)
    return lambda: [tuple(t.numpy().tolist()) for t in compiled()]


def distribution_metrics(probs):
    """``(entropy, max_prob)`` per row of ``probs`` ``[rows, n]``, entropy / log n.

    Example:
        >>> h, top = distribution_metrics([[0.25] * 4, [1.0, 0, 0, 0]])
        >>> h.round(6).tolist(), top.tolist()
        ([1.0, 0.0], [0.25, 1.0])
    """
    p = np.asarray(probs, dtype=np.float64)
    p = p.reshape(-1, p.shape[-1])
    n = p.shape[-1]
    if n < 2:
        return np.zeros(len(p)), np.ones(len(p))
    logs = np.log(np.where(p > 0, p, 1.0))
    entropy = -(p * logs).sum(-1) / math.log(n)
    return np.clip(entropy, 0.0, 1.0), p.max(-1)


def flips(layer):
    """Fraction of the last tracked steps in which ``layer``'s argmax changed, or None.

    Example:
        >>> import searchlayers as sl
        >>> flips(sl.MixedOp(["skip_connect", "none"])) is None
        True
    """
    history = _FLIPS.get(layer)
    if not history:
        return None
    return float(np.mean(history))


def layer_decision(layer, prob=None, max_flips=MAX_FLIPS):
    """How decided one search layer is (see the module docstring).

    Args:
        layer: a built ``SearchLayer`` with architecture logits.
        prob: the largest probability each distribution needs (default
            ``MASK_PROB`` for masks, ``CATEGORICAL_PROB`` otherwise).
        max_flips: largest tolerated ``flips``.

    Returns:
        ``dict(entropy, max_prob, flips, decided, decided_share, min_max_prob,
        kind, choices, distributions)``.

    Example:
        >>> import searchlayers as sl
        >>> op = sl.MixedOp(["skip_connect", "none"]); _ = op(np.ones([1, 2, 2, 1], "float32"))
        >>> _ = op.arch("logits").assign([3.0, 0.0])
        >>> d = layer_decision(op)
        >>> round(d["max_prob"], 3), d["decided"]
        (0.953, True)
    """
    prob = checks.number("layer_decision", "prob", prob, low=0, high=1, none_ok=True)
    max_flips = checks.number("layer_decision", "max_flips", max_flips, low=0, high=1)
    rows = _rows(layer)
    bernoulli = is_bernoulli(layer)
    if prob is None:
        prob = MASK_PROB if bernoulli else CATEGORICAL_PROB
    entropy, top = distribution_metrics(rows)
    flip = flips(layer)
    decided = bool(top.min() >= prob) and (flip is None or flip <= max_flips)
    return dict(
        entropy=float(entropy.mean()),
        max_prob=float(top.mean()),
        flips=flip,
        decided=decided,
        decided_share=float(np.mean(top >= prob)),
        min_max_prob=float(top.min()),
        kind="bernoulli" if bernoulli else "categorical",
        choices=int(rows.shape[-1]),
        distributions=int(rows.shape[0]),
    )


def _groups(model):
    return reg.arch_groups(reg.unwrap(model))


def model_decision(model, **kwargs):
    """``{group: layer_decision(layer)}`` over the model's architecture groups.

    ``kwargs`` go to ``layer_decision``.

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((4, 4, 2)),
        ...                          sl.MixedOp(["skip_connect", "none"], name="e")])
        >>> list(model_decision(m))
        ['e']
    """
    return {key: layer_decision(layer, **kwargs) for key, layer in _groups(model).items()}


def summary(model, **kwargs):
    """Counts of decided / undecided groups and the medians over groups.

    Returns ``dict(decided, undecided, median_max_prob, median_entropy,
    max_flips, decided_share, layers=model_decision(model))``; ``decided_share``
    weighs each group by its distributions (a FiGS group: its channels). An
    empty model has no groups, medians and share of NaN.

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((4, 4, 2)),
        ...                          sl.MixedOp(["skip_connect", "none"])])
        >>> s = summary(m)
        >>> s["decided"], s["undecided"], round(s["median_max_prob"], 2)
        (0, 1, 0.5)
    """
    layers = model_decision(model, **kwargs)
    values = list(layers.values())
    decided = sum(d["decided"] for d in values)
    known = [d["flips"] for d in values if d["flips"] is not None]
    count = sum(d["distributions"] for d in values)
    share = sum(d["decided_share"] * d["distributions"] for d in values) / count if count \
        else float("nan")

    def median(name):
        return float(np.median([d[name] for d in values])) if values else float("nan")

    return dict(
        decided=decided,
        undecided=len(values) - decided,
        median_max_prob=median("max_prob"),
        median_entropy=median("entropy"),
        max_flips=max(known) if known else None,
        decided_share=share,
        layers=layers,
    )


def format_summary(result, max_rows=20):
    """The one-screen text of a ``summary`` result.

    Example:
        >>> print(format_summary(summary(m)))  # doctest: +SKIP
        Architecture decision: 0 of 1 groups decided (median largest probability 0.50)
    """
    layers = result["layers"]
    total = len(layers)
    lines = [
        f"Architecture decision: {result['decided']} of {total} groups decided "
        f"(median largest probability {result['median_max_prob']:.2f}, "
        f"median normalized entropy {result['median_entropy']:.2f}"
        + ("" if result.get("decided_share") is None else
           f"; {result['decided_share']:.0%} of the distributions (edges, channels) decided")
        + ")"
    ]
    lines.append(f"  {'group':<32} {'max p':>6} {'entropy':>8} {'flips':>6}  state")
    for i, (key, d) in enumerate(layers.items()):
        if i == max_rows:
            lines.append(f"  ... {total - max_rows} more groups")
            break
        flip = "-" if d["flips"] is None else f"{d['flips']:.2f}"
        state = "decided" if d["decided"] else "UNDECIDED"
        lines.append(f"  {key[:32]:<32} {d['max_prob']:>6.2f} {d['entropy']:>8.2f} "
                     f"{flip:>6}  {state}")
    return "\n".join(lines)


def advice(result, steps=None, arch_lr=None):
    """What to change after an undecided search (one paragraph), or None if decided.

    Example:
        >>> advice(dict(decided=0, undecided=3, median_max_prob=0.13, layers={}),
        ...        steps=100, arch_lr=3e-4)[:44]
        'searchlayers: the search ended undecided (3 '
    """
    if not result["undecided"]:
        return None
    from searchlayers import schedules

    text = (f"searchlayers: the search ended undecided ({result['undecided']} of "
            f"{result['decided'] + result['undecided']} groups; median largest probability "
            f"{result['median_max_prob']:.2f}), so the derived child is close to a random pick.")
    if steps:
        moved = f" ({steps} architecture steps"
        if arch_lr:
            moved += f" of Adam at lr={arch_lr:.2g} move a logit by at most ~{steps * arch_lr:.2g})"
        else:
            moved += ")"
        text += moved
        text += (f". Use schedule='auto' (searchlayers.schedules: arch lr "
                 f"~{schedules.arch_lr(steps):.2g} for {steps} steps), ")
    else:
        text += ". Use schedule='auto' (searchlayers.schedules), "
    text += ("raise the architecture learning rate, search for more steps, or anneal the "
             "temperature lower (TemperatureScheduler).")
    return text


def _arch_lr(model):
    """The architecture optimizer's current learning rate, when it can be read."""
    opt = getattr(model, "arch_optimizer", None)
    if opt is None:  # plain compile with searchlayers.joint_optimizer (larq CaseOptimizer)
        pairs = getattr(getattr(model, "optimizer", None), "pred_opt_pairs", None) or []
        opt = pairs[0][1] if pairs else None
    lr = getattr(opt, "learning_rate", None)
    if lr is None:
        return None
    try:
        return float(lr(opt.iterations) if callable(lr) else keras.backend.get_value(lr))
    except (TypeError, ValueError):
        return None


@register
class DecisionTracker(callback_state.Resumable, keras.callbacks.Callback):
    """Records each group's argmax every ``every`` steps; reports at train end.

    The flip history (the last ``window`` records) is what ``flips`` and
    ``layer_decision`` read. When ``fit`` ends it prints ``format_summary``
    (with ``verbose`` or fit's own verbosity) and, when some group is
    undecided, issues an ``UndecidedSearchWarning`` with ``advice``.
    ``result`` holds the last ``summary``. A search resumed by
    ``BackupAndRestore`` goes on with its step count and history
    (``searchlayers.callback_state``).

    Args:
        window: steps of history kept per group.
        every: record every this many steps (1: each step; one small
            ``probabilities()`` read per group).
        verbose: print the summary (None: when fit is verbose).
        warn: issue the warning when undecided.

    Example:
        >>> tracker = DecisionTracker()
        >>> model.fit(x, y, epochs=3, callbacks=[tracker])  # doctest: +SKIP
        >>> tracker.result["decided"]  # doctest: +SKIP
        14
    """

    def __init__(self, window=WINDOW, every=1, verbose=None, warn=True):
        super().__init__()
        for name, value in (("window", window), ("every", every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DecisionTracker: {name} must be an integer >= 1, got {value!r}.")
        self.window, self.every = window, every
        self.verbose, self.warn = verbose, bool(warn)
        self.steps, self.result, self._last, self._groups = 0, None, {}, {}

    def on_train_begin(self, logs=None):
        self._groups = _groups(self.model)
        self._picks = _argmax_function(list(self._groups.values()))
        self._last = dict(zip(self._groups, self._picks()))
        for layer in self._groups.values():
            _FLIPS[layer] = collections.deque(maxlen=self.window)
        self.steps, self._saved, self._resumed = 0, None, False
        if self._groups:  # what a resumed search goes on from (BackupAndRestore)
            self._saved = tf.Variable(self._record(), trainable=False)
            callback_state.keep_in_checkpoints(self.model, self.state_key(), state=self._saved)

    def state_key(self):
        """The checkpoint key of the tracker's state (``callback_state``)."""
        return "DecisionTracker"

    def _record(self):
        """The step count, the last picks and each group's flip history
        (right-aligned, -1 while shorter than the window) as one int64 vector."""
        picks = [np.asarray(p, np.int64) for p in self._last.values()]
        history = [[-1] * (self.window - len(_FLIPS[layer])) + list(_FLIPS[layer])
                   for layer in self._groups.values()]
        return np.concatenate([[self.steps], *picks, np.ravel(history)]).astype(np.int64)

    def on_epoch_begin(self, epoch, logs=None):
        # the first epoch, after every callback's on_train_begin: a backup is read by now
        if self._saved is None or self._resumed:
            return
        self._resumed = True
        record = self._saved.numpy()
        if record[0]:
            self.steps = int(record[0])
            ends = 1 + np.cumsum([len(pick) for pick in self._last.values()])
            picks = np.split(record[1:ends[-1]], ends[:-1] - 1)
            self._last = {key: tuple(p.tolist()) for key, p in zip(self._groups, picks)}
            history = record[ends[-1]:].reshape(len(self._groups), self.window)
            for layer, row in zip(self._groups.values(), history):
                _FLIPS[layer].extend(bool(v) for v in row if v >= 0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if not self._groups:
            return
        if not self.steps % self.every:
            for (key, layer), now in zip(self._groups.items(), self._picks()):
                _FLIPS[layer].append(now != self._last[key])
                self._last[key] = now
        # at the epoch's last step, before any on_epoch_end (BackupAndRestore's
        # save); each step when fit does not know the epoch's length. A mid-epoch
        # backup (save_freq=N) has the state of the last epoch's end.
        steps = (getattr(self, "params", None) or {}).get("steps")
        if not steps or batch + 1 == steps:
            self._saved.assign(self._record())

    def on_train_end(self, logs=None):
        super().on_train_end(logs)  # releases the state
        if not self._groups:
            return
        self.result = summary(self.model)
        verbose = self.verbose if self.verbose is not None else (self.params or {}).get("verbose")
        if verbose:
            print(format_summary(self.result))
        message = advice(self.result, self.steps, _arch_lr(self.model))
        if message and self.warn:
            warnings.warn(message, UndecidedSearchWarning, stacklevel=2)

    def get_config(self):
        return dict(window=self.window, every=self.every, verbose=self.verbose, warn=self.warn)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = [
    "CATEGORICAL_PROB",
    "DecisionTracker",
    "MASK_PROB",
    "MAX_FLIPS",
    "UndecidedSearchWarning",
    "advice",
    "argmax",
    "distribution_metrics",
    "flips",
    "format_summary",
    "is_bernoulli",
    "layer_decision",
    "model_decision",
    "summary",
]
