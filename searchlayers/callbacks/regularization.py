"""Callbacks that add a term to the search's loss, or hold the architecture still.

- ``EntropyRegularizer``: adds ``coeff(t) * H(p)`` to the loss (BARS, BNAS); its
  coefficient follows a schedule shape (``callbacks.schedules``).
- ``FLOPsRegularizer``: expected-cost term, additive, BARS multiplicative, or a
  Lagrange multiplier that settles on a budget.
- ``ArchWarmup``: freezes the architecture for the first epochs.

Example:
    >>> round(EntropyRegularizer.bnas().value(7.7), 4)
    -0.3679
"""

import math
import weakref

import tensorflow as tf

from searchlayers import checks
from searchlayers import regularizers as reg
from searchlayers._keras import keras, register
from searchlayers.callback_state import Resumable, keep_in_checkpoints, release
from searchlayers.callbacks._common import require_search_layers
from searchlayers.callbacks.schedules import Scheduled, make
from searchlayers.search import tie_arch_variables

MODES = ("additive", "multiplicative", "target")


@register
class EntropyRegularizer(Scheduled):
    """Adds ``coefficient(t) * H`` to the loss; ``H`` is the entropy of the
    architecture distributions (``searchlayers.regularizers.entropy``).

    A negative coefficient rewards exploration (uniform distributions), a
    positive one commitment (one-hot). The default is the BARS code's constant
    0.01 on the summed entropy; ``bars(epochs)`` goes linearly from negative to
    positive (BARS eq. 6), ``bnas()`` is the diversity term
    ``-lambda * H * exp(-t / tau)`` with the mean edge entropy.

    Args:
        schedule, start, end, rate, total, per: the coefficient's schedule
            (see ``callbacks.schedules.make``).
        reduction: ``"sum"`` or ``"mean"`` over the distributions.

    Example:
        >>> bnas = EntropyRegularizer.bnas()
        >>> round(bnas.value(0), 4), round(bnas.value(7.7), 4)
        (-1.0, -0.3679)
        >>> EntropyRegularizer("linear", start=-1.0, end=1.0, total=4).value(1)
        -0.5
        >>> model.fit(x, y, epochs=50, callbacks=[bnas])  # doctest: +SKIP
    """

    def __init__(self, schedule="constant", start=0.01, end=None, rate=None, total=None,
                 per="epoch", reduction="sum"):
        super().__init__(per)
        self.shape = make(schedule, start, end, rate, total, where="EntropyRegularizer")
        checks.choice("EntropyRegularizer", "reduction", reduction, reg.REDUCTIONS)
        start = checks.number("EntropyRegularizer", "start", start)
        end = checks.number("EntropyRegularizer", "end", end, none_ok=True)
        self.schedule, self.start, self.end = schedule, start, end
        self.rate, self.total, self.reduction = rate, total, reduction
        self.coefficient = tf.Variable(self.value(0), trainable=False, dtype=tf.float32,
                                       name="entropy_coefficient")

    @classmethod
    def bars(cls, epochs, start=-0.01, end=0.01):
        """BARS: linear ``start`` (< 0, explore) to ``end`` (> 0, commit) at the last epoch.

        Example:
            >>> EntropyRegularizer.bars(epochs=3).value(2)
            0.01
        """
        return cls("linear", start=start, end=end, total=max(int(epochs) - 1, 1))

    @classmethod
    def bnas(cls, lam=1.0, tau=7.7):
        """BNAS diversity: ``-lam * exp(-epoch / tau)`` on the mean entropy.

        Example:
            >>> EntropyRegularizer.bnas(lam=2.0).value(0)
            -2.0
        """
        tau = reg.check_positive(tau, "tau", "EntropyRegularizer.bnas")
        return cls("exponential", start=-float(lam), rate=math.exp(-1.0 / tau),
                   reduction="mean")

    def loss(self):
        """The current term ``coefficient * H`` (a tensor).

        Example:
            >>> cb = EntropyRegularizer(start=0.5)
            >>> cb.set_model(model)  # doctest: +SKIP
            >>> float(cb.loss())  # 0.5 * summed entropy  # doctest: +SKIP
        """
        return self.coefficient * reg.entropy(self.model, self.reduction)

    def set_model(self, model):
        super().set_model(model)
        _detach_variables(model, "EntropyRegularizer")

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        require_search_layers(self.model, "EntropyRegularizer")
        _attach(self, reg.attach_loss, "EntropyRegularizer", self.loss,
                variables=self.loss_variables())

    def loss_variables(self):
        """The callback's variables ``loss`` reads (beside the model's own)."""
        return {"coefficient": self.coefficient}

    def on_train_end(self, logs=None):
        _detach(self.model, "EntropyRegularizer")
        super().on_train_end(logs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["arch_entropy"] = float(reg.entropy(self.model, self.reduction))

    def _apply(self, value):
        self.coefficient.assign(value)

    def get_config(self):
        return dict(super().get_config(), reduction=self.reduction)


def _attach(callback, attach, key, fn, variables=None, **kwargs):
    """Attaches ``callback``'s loss term to its model; rebuilds train / test
    functions traced without it.

    The callback's own ``variables`` (those the term reads) are in the model's
    checkpoints until its fit ends (``_detach``), so that ``BackupAndRestore``
    restores them; ``_detach_variables`` drops an interrupted fit's when the next
    fit sets up. (A SavedModel holds no term: ``regularizers._term``.)"""
    model = callback.model
    _claim(model, key, callback)
    if attach(model, key, fn, **kwargs):
        model.test_function = None
        if model.train_function is not None:
            model.make_train_function(force=True)
    if variables:
        keep_in_checkpoints(model, f"loss_{key}", **variables)


def _claim(model, key, callback):
    """One term per ``key`` in a fit: a second callback's would replace the first's
    silently. Callbacks of one fit share its ``params`` dict (Keras' CallbackList)."""
    claims = model.__dict__.setdefault("_searchlayers_loss_terms", {})  # not tracked
    owner, params = claims.get(key, (lambda: None, None))
    other = owner()
    if other not in (None, callback) and callback.params and params is callback.params:
        what = ("one per metric" if isinstance(callback, FLOPsRegularizer) else
                "one (FigsCommit and SearchSchedule add an entropy term themselves)")
        _detach(model, key)  # the other's, attached already: this fit ends here
        raise ValueError(
            f"{type(callback).__name__}: this fit already adds the loss term {key!r} "
            f"with {type(other).__name__}, which this one would replace; pass {what}.")
    claims[key] = (weakref.ref(callback), callback.params)


def _detach(model, key):
    """Takes a callback's term out of ``model``'s loss when its fit ends: a later
    fit, ``evaluate`` or a saved model holds no penalty of a callback it was not
    given (nor its variables: a reloaded SavedModel captured them and failed)."""
    if reg.detach(model, key):
        model.train_function = model.test_function = None  # traced with the term
    _detach_variables(model, key)


def _detach_variables(model, key):
    """Drops the variables an earlier fit attached for the term ``key`` (call it
    in ``set_model``, before a backup is read). Left in place, a backup read by
    this fit restores into them, not into the ones this fit attaches (TensorFlow
    binds each saved variable to one object): an interrupted fit's fitted child,
    say (``callback_state.Resumable``)."""
    release(model, f"loss_{key}")


@register
class FLOPsRegularizer(Resumable, keras.callbacks.Callback):
    """Penalizes the supernet's expected cost (``regularizers.expected_cost``).

    - ``mode="additive"``: loss ``+= strength * cost`` (``strength * cost /
      budget`` when a budget is given); works with any model.
    - ``mode="multiplicative"`` (BARS eq. 7): loss ``= L0 * (cost/budget)^theta``
      with ``theta = over`` when ``cost >= budget`` and ``under`` otherwise;
      needs a ``searchlayers.SearchModel``.
    - ``mode="target"``: the additive term with ``strength`` as a Lagrange
      multiplier of the constraint ``cost = budget``:
      ``integral += rate * (cost / budget - 1)`` per epoch (spread over its
      steps, updated every ``every`` steps) and ``strength = integral +
      damping * (cost / budget - 1)`` (it grows while the expected cost is over
      the budget, shrinks, even below 0, while it is under), so the search
      settles on the budget whatever the starting strength. Derive
      with ``searchlayers.budget.fit`` to land the exact cost on it too.

    Args:
        budget: cost budget (> 0), required for the multiplicative mode.
        metric: "macs" (alias "flops"), "binary_macs" ("binary_ops"), "params",
            "equivalent_ops", ... (``regularizers.METRICS``).
        mode: "additive", "multiplicative" or "target".
        strength: additive coefficient (a variable: ``cb.strength.assign(...)``).
        under, over: exponents under / over budget (BARS code: 0 and 1).
        search_only: count only the search layers (BARS).
        form: for FiGS masks, "expected" (eq. 6) or "morphnet" (MorphNet's
            linearised form, ``regularizers.figs_expected_cost``).
        rate: ``mode="target"``: the multiplier's integral step per unit of
            relative violation per epoch (spread over the epoch's steps).
        damping: ``mode="target"``: the proportional part of the multiplier
            per unit of relative violation (a PI controller; 0: pure dual ascent).
        every: ``mode="target"``: update the multiplier every this many steps.

    Example:
        >>> cb = FLOPsRegularizer(budget=2e6, metric="equivalent_ops", mode="multiplicative")
        >>> SearchModel(supernet).fit(data, callbacks=[cb])  # doctest: +SKIP
    """

    def __init__(self, budget=None, metric="macs", mode="additive", strength=1.0,
                 under=0.0, over=1.0, search_only=False, form="expected", rate=1.0,
                 damping=2.0, every=5):
        super().__init__()
        where = "FLOPsRegularizer"
        self._metric_name = reg.check_metric(metric, where)  # aliases resolved: one key
        self.form = checks.choice(where, "form", form, reg.FIGS_FORMS)
        checks.choice(where, "mode", mode, MODES)
        if budget is not None or mode != "additive":
            budget = reg.check_positive(budget, "budget", f"{where}(mode={mode!r})")
        self.rate = reg.check_positive(rate, "rate", where)
        self.budget, self.metric, self.mode = budget, metric, mode
        self.under = checks.number(where, "under", under)
        self.over = checks.number(where, "over", over)
        self.search_only = checks.boolean(where, "search_only", search_only)
        # the target mode's multiplier goes below 0 while the cost is under the budget
        strength = checks.number(where, "strength", strength,
                                 low=None if mode == "target" else 0)
        self.strength = tf.Variable(strength, trainable=False, dtype=tf.float32,
                                    name="flops_strength")
        self.damping = checks.number(where, "damping", damping, low=0)
        self.every = checks.integer(where, "every", every, low=1)
        # the target mode's state, in the model's checkpoints while it trains (BackupAndRestore)
        self._integral = tf.Variable(float(strength), trainable=False, dtype=tf.float64,
                                     name="flops_integral")

    def cost(self):
        """The model's expected cost (a differentiable scalar tensor).

        Example:
            >>> float(cb.cost())  # doctest: +SKIP
            123456.0
        """
        return reg.expected_cost(self.model, self.metric, self.search_only, self.form)

    def loss(self):
        """The additive term ``strength * cost [/ budget]``.

        Example:
            >>> cb = FLOPsRegularizer(strength=1e-6)
            >>> cb.set_model(model)  # doctest: +SKIP
            >>> float(cb.loss())  # 1e-6 * expected MACs  # doctest: +SKIP
        """
        scaled = self.cost() / (self.budget or 1.0)
        return self.strength * scaled

    def multiplier(self):
        """The BARS factor ``(cost / budget)^theta``.

        Example:
            >>> float(cb.multiplier())  # doctest: +SKIP
            1.0
        """
        return reg.budget_multiplier(self.cost(), self.budget, self.under, self.over)

    def on_train_begin(self, logs=None):
        self._cost_fn = None
        tie_arch_variables(self.model)
        require_search_layers(self.model, "FLOPsRegularizer")
        if self.mode == "target":  # (strength is a loss variable: _attach)
            keep_in_checkpoints(self.model, self.state_key(), integral=self._integral)
        if self.mode != "multiplicative":
            _attach(self, reg.attach_loss, self.state_key(), self.loss,
                    variables={"strength": self.strength})
        else:
            _attach(self, reg.attach_loss_multiplier, self.state_key(),
                    self.multiplier, where=f"FLOPsRegularizer(mode={self.mode!r})")

    def on_train_batch_end(self, batch, logs=None):
        if self.mode != "target" or batch % self.every:
            return
        # PI update of the multiplier (Stooke et al. 2020, "Responsive safety in RL
        # by PID Lagrangian methods"): the integral of the relative violation plus a
        # proportional term that damps the overshoot a pure integral (dual ascent)
        # shows on the logits, which integrate the penalty's gradient themselves.
        if getattr(self, "_cost_fn", None) is None:  # one graph: eager costing is slow
            self._cost_fn = tf.function(self.cost, autograph=False)
        violation = float(self._cost_fn()) / self.budget - 1.0
        steps = self.params.get("steps") if getattr(self, "params", None) else None
        self._integral.assign_add(self.rate * violation * self.every / float(steps or 100))
        self.strength.assign(float(self._integral.numpy()) + self.damping * violation)

    def set_model(self, model):
        super().set_model(model)
        _detach_variables(model, self.state_key())

    def on_train_end(self, logs=None):
        self._cost_fn = None  # its graph does not deepcopy (keras-tuner copies callbacks)
        _detach(self.model, self.state_key())
        super().on_train_end(logs)

    def state_key(self):
        """The key of its loss term, and of the target mode's state in checkpoints
        (``callback_state``): one per metric, so budgets on two metrics combine."""
        return f"FLOPsRegularizer_{self._metric_name}"

    def on_epoch_end(self, epoch, logs=None):
        expected = float(self.cost())
        if logs is not None:
            logs[f"expected_{self.metric}"] = expected
            if self.budget is not None:  # the asked budget, for reports (asked / got)
                logs[f"budget_{self.metric}"] = float(self.budget)
            if self.mode == "target":
                logs["flops_strength"] = float(self.strength.numpy())

    def get_config(self):
        return dict(budget=self.budget, metric=self.metric, mode=self.mode,
                    strength=float(self.strength.numpy()), under=self.under, over=self.over,
                    search_only=self.search_only, form=self.form, rate=self.rate,
                    damping=self.damping, every=self.every)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register
class ArchWarmup(keras.callbacks.Callback):
    """Keeps the architecture fixed for the first ``epochs`` epochs (weights
    warm up, BARS sec. 4.2.2): sets ``SearchModel.arch_enabled``.

    Example:
        >>> SearchModel(supernet).fit(data, epochs=10, callbacks=[ArchWarmup(3)])  # doctest: +SKIP
        >>> ArchWarmup(3).enabled(2), ArchWarmup(3).enabled(3)
        (False, True)
    """

    def __init__(self, epochs=1):
        super().__init__()
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"ArchWarmup: epochs must be an integer >= 0, got {epochs!r}.")
        self.epochs = epochs

    def enabled(self, epoch):
        """Whether the architecture trains in ``epoch``.

        Example:
            >>> ArchWarmup(1).enabled(0)
            False
        """
        return epoch >= self.epochs

    def set_model(self, model):
        super().set_model(model)
        if not isinstance(getattr(model, "arch_enabled", None), tf.Variable):
            raise TypeError(
                f"ArchWarmup: model '{model.name}' ({type(model).__name__}) has no "
                "`arch_enabled` variable. Wrap it: `searchlayers.SearchModel(model)`."
            )

    def on_epoch_begin(self, epoch, logs=None):
        setter = getattr(self.model, "set_arch_enabled", None)
        if setter is not None:  # SearchModel: retraces under several replicas
            setter(self.enabled(epoch))
        else:
            self.model.arch_enabled.assign(self.enabled(epoch))

    def get_config(self):
        return {"epochs": self.epochs}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["MODES", "ArchWarmup", "EntropyRegularizer", "FLOPsRegularizer"]
