"""Callbacks that steer a search during ``model.fit``.

- ``TemperatureScheduler``: anneals the search layers' relaxation temperature.
- ``EntropyRegularizer``: adds ``coeff(t) * H(p)`` to the loss (BARS, BNAS).
- ``FLOPsRegularizer``: expected-cost term, additive or BARS multiplicative.
- ``ArchWarmup``: freezes the architecture for the first epochs.
- ``ArchitectureLogger``: distributions per epoch to CSV, TensorBoard, PNG.
- ``BNScoreEvaluator``: BN-NAS' op scores and rank stability per epoch (early bird).

Every schedule is a pure function of the epoch (or the global step
``epoch * steps_per_epoch + batch``), recomputed in ``on_epoch_begin`` /
``on_train_batch_begin`` and assigned to a variable, so a search resumed by
``keras.callbacks.BackupAndRestore`` continues with the same values and the
traced train function never retraces.

Example:
    >>> from searchlayers import callbacks
    >>> sched = callbacks.TemperatureScheduler()      # EnTranNAS: 5.0 x 0.923 per epoch
    >>> round(sched.value(2), 4)
    4.2596
"""

import csv
import math
import numbers
import os

import numpy as np
import tensorflow as tf

from searchlayers import checks
from searchlayers import regularizers as reg
from searchlayers.relax import check_temperature
from searchlayers._keras import keras, register
from searchlayers.launch import is_chief
from searchlayers.layers.base import search_layers
from searchlayers.search import tie_arch_variables

SCHEDULES = ("constant", "exponential", "linear", "cosine")
PER = ("epoch", "step")
MODES = ("additive", "multiplicative", "target")


def schedule_value(schedule, t, start, end=None, rate=None, total=None):
    """The value of a named schedule at time ``t`` (an epoch or a step).

    - ``constant``: ``start``;
    - ``exponential``: ``start * rate**t``;
    - ``linear``: ``start -> end`` over ``total``, then ``end``;
    - ``cosine``: half cosine ``start -> end`` over ``total``, then ``end``.

    Example:
        >>> schedule_value("linear", 5, start=10.0, end=0.0, total=10)
        5.0
    """
    if schedule == "constant":
        return float(start)
    if schedule == "exponential":
        return float(start * rate**t)
    frac = min(max(t, 0) / total, 1.0)
    if schedule == "linear":
        return float(start + (end - start) * frac)
    return float(end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def _check_choice(value, allowed, what, where):
    checks.choice(where, what, value, allowed)


def _check_schedule(where, schedule, end, rate, total):
    """Validates the arguments a named schedule needs."""
    _check_choice(schedule, SCHEDULES, "schedule", where)
    if schedule == "exponential":
        reg.check_positive(rate, "rate", where)
    if schedule in ("linear", "cosine"):
        if end is None or total is None:
            raise ValueError(f"{where}: schedule {schedule!r} needs `end` and `total`.")
        reg.check_positive(total, "total", where)


def _is_chief(model):
    """Whether this process writes a callback's files: all but the non-chief
    workers of a multi-worker strategy. Those still compute every value (reading
    some variables is a collective op that needs every worker)."""
    return is_chief(model.distribute_strategy)


def _check_model_has_search_layers(model, where):
    if not search_layers(model):
        raise ValueError(f"{where}: model '{model.name}' has no search layers.")


class _Scheduled(keras.callbacks.Callback):
    """Base: recomputes ``value(t)`` each epoch or step and calls ``_apply``."""

    def __init__(self, per="epoch"):
        super().__init__()
        _check_choice(per, PER, "per", type(self).__name__)
        self.per = per
        self._epoch = 0

    def value(self, t):
        """The schedule's value at epoch or global step ``t`` (pure)."""
        raise NotImplementedError

    def _apply(self, value):
        raise NotImplementedError

    def _steps(self):
        steps = (self.params or {}).get("steps")
        if not steps:
            raise ValueError(
                f"{type(self).__name__}(per='step') needs the number of steps per epoch, "
                "which fit could not infer: pass `steps_per_epoch` to fit."
            )
        return steps

    def on_train_begin(self, logs=None):
        self._cost_fn = None
        tie_arch_variables(self.model)
        if self.per == "step":
            self._steps()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.per == "epoch":
            self._apply(self.value(epoch))

    def on_train_batch_begin(self, batch, logs=None):
        if self.per == "step":
            self._apply(self.value(self._epoch * self._steps() + batch))

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register
class TemperatureScheduler(_Scheduled):
    """Anneals the ``temperature`` of the search layers.

    Schedules (``t`` = epoch, or global step with ``per="step"``):
    ``exponential`` ``start * rate**t`` (EnTranNAS: 5.0 x 0.923 per epoch, the
    default), ``linear`` ``start -> end`` over ``total`` (GDAS: 10 -> 0.1),
    ``cosine`` ``start -> end`` over ``total``, ``constant``. The value never
    goes below ``floor`` (SNAS: 0.03).

    Args:
        schedule: one of ``SCHEDULES``.
        start: temperature at ``t = 0``, > 0.
        end: final temperature of ``linear`` / ``cosine``, > 0.
        rate: factor per unit of ``t`` of ``exponential``, > 0.
        total: epochs (or steps) that ``linear`` / ``cosine`` take to reach ``end``.
        per: ``"epoch"`` or ``"step"``.
        floor: lower bound, > 0, or None.
        layers: only layers of these classes (class names or classes).
        keys: only layers whose ``arch_key`` (or name, without a key) is listed.

    Example:
        >>> gdas = TemperatureScheduler("linear", start=10.0, end=0.1, total=9)
        >>> gdas.value(0), round(gdas.value(9), 6)
        (10.0, 0.1)
        >>> model.fit(x, y, epochs=10, callbacks=[gdas])  # doctest: +SKIP
    """

    def __init__(self, schedule="exponential", start=5.0, end=None, rate=0.923, total=None,
                 per="epoch", floor=None, layers=None, keys=None):
        super().__init__(per)
        where = "TemperatureScheduler"
        _check_schedule(where, schedule, end, rate, total)
        self.schedule = schedule
        self.start = check_temperature(start, f"{where} start")
        self.end = None if end is None else check_temperature(end, f"{where} end")
        self.rate = float(rate) if rate is not None else None
        self.total = total
        self.floor = None if floor is None else check_temperature(floor, f"{where} floor")
        self.layers = None if layers is None else [
            c if isinstance(c, str) else c.__name__
            for c in checks.sequence(where, "layers", layers,
                                     what="a list of search-layer classes or class names")
        ]
        self.keys = None if keys is None else checks.sequence(
            where, "keys", keys, what="a list of arch_key / layer names")

    @classmethod
    def entrannas(cls, start=5.0, rate=0.923):
        """EnTranNAS: ``start * rate**epoch`` (ImageNet DST: 1.0 and 0.9).

        Example:
            >>> TemperatureScheduler.entrannas().value(1)
            4.615
        """
        return cls("exponential", start=start, rate=rate)

    @classmethod
    def gdas(cls, epochs, start=10.0, end=0.1):
        """GDAS: linear ``start -> end``, reaching ``end`` at the last epoch.

        Example:
            >>> round(TemperatureScheduler.gdas(epochs=3).value(1), 4)
            5.05
        """
        return cls("linear", start=start, end=end, total=max(int(epochs) - 1, 1))

    def value(self, t):
        """Temperature at epoch (or global step) ``t``.

        Example:
            >>> TemperatureScheduler("constant", start=2.0, floor=3.0).value(7)
            3.0
        """
        value = schedule_value(self.schedule, t, self.start, self.end, self.rate, self.total)
        if self.floor is not None:
            value = max(value, self.floor)
        return check_temperature(value, f"TemperatureScheduler at t={t}")

    def targets(self, model=None):
        """The search layers whose temperature this callback sets.

        Example:
            >>> TemperatureScheduler().targets(model)  # doctest: +SKIP
            [<MixedOp ...>]
        """
        model = model or self.model
        chosen = [
            layer for layer in search_layers(model)
            if (self.layers is None or type(layer).__name__ in self.layers)
            and (self.keys is None or (layer.arch_key or layer.name) in self.keys)
        ]
        if not chosen:
            raise ValueError(
                f"TemperatureScheduler: no search layer of model '{model.name}' matches "
                f"layers={self.layers} and keys={self.keys}."
            )
        return chosen

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._targets = self.targets()

    def _apply(self, value):
        for layer in self._targets:
            layer.temperature.assign(value)

    def get_config(self):
        return dict(schedule=self.schedule, start=self.start, end=self.end, rate=self.rate,
                    total=self.total, per=self.per, floor=self.floor, layers=self.layers,
                    keys=self.keys)


@register
class EntropyRegularizer(_Scheduled):
    """Adds ``coefficient(t) * H`` to the loss; ``H`` is the entropy of the
    architecture distributions (``searchlayers.regularizers.entropy``).

    A negative coefficient rewards exploration (uniform distributions), a
    positive one commitment (one-hot). The default is the BARS code's constant
    0.01 on the summed entropy; ``bars(epochs)`` goes linearly from negative to
    positive (BARS eq. 6), ``bnas()`` is the diversity term
    ``-lambda * H * exp(-t / tau)`` with the mean edge entropy.

    Args:
        schedule, start, end, rate, total, per: the coefficient's schedule
            (see ``schedule_value``).
        reduction: ``"sum"`` or ``"mean"`` over the distributions.

    Example:
        >>> bnas = EntropyRegularizer.bnas()
        >>> round(bnas.value(0), 4), round(bnas.value(7.7), 4)
        (-1.0, -0.3679)
        >>> model.fit(x, y, epochs=50, callbacks=[bnas])  # doctest: +SKIP
    """

    def __init__(self, schedule="constant", start=0.01, end=None, rate=None, total=None,
                 per="epoch", reduction="sum"):
        super().__init__(per)
        _check_schedule("EntropyRegularizer", schedule, end, rate, total)
        _check_choice(reduction, reg.REDUCTIONS, "reduction", "EntropyRegularizer")
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

    def value(self, t):
        """Coefficient at epoch (or global step) ``t``.

        Example:
            >>> EntropyRegularizer("linear", start=-1.0, end=1.0, total=4).value(1)
            -0.5
        """
        return schedule_value(self.schedule, t, self.start, self.end, self.rate, self.total)

    def loss(self):
        """The current term ``coefficient * H`` (a tensor).

        Example:
            >>> cb = EntropyRegularizer(start=0.5)
            >>> cb.set_model(model)  # doctest: +SKIP
            >>> float(cb.loss())  # 0.5 * summed entropy  # doctest: +SKIP
        """
        return self.coefficient * reg.entropy(self.model, self.reduction)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        _check_model_has_search_layers(self.model, "EntropyRegularizer")
        _attach(self.model, reg.attach_loss, "EntropyRegularizer", self.loss)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["arch_entropy"] = float(reg.entropy(self.model, self.reduction))

    def _apply(self, value):
        self.coefficient.assign(value)

    def get_config(self):
        return dict(schedule=self.schedule, start=self.start, end=self.end, rate=self.rate,
                    total=self.total, per=self.per, reduction=self.reduction)


def _attach(model, attach, key, fn, **kwargs):
    """Attaches a loss term; rebuilds train / test functions traced without it."""
    if attach(model, key, fn, **kwargs):
        model.test_function = None
        if model.train_function is not None:
            model.make_train_function(force=True)


@register
class FLOPsRegularizer(keras.callbacks.Callback):
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
        reg.check_metric(metric, where)
        _check_choice(form, reg.FIGS_FORMS, "form", where)
        self.form = form
        _check_choice(mode, MODES, "mode", where)
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
        self._integral = strength

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
        _check_model_has_search_layers(self.model, "FLOPsRegularizer")
        if self.mode != "multiplicative":
            _attach(self.model, reg.attach_loss, "FLOPsRegularizer", self.loss)
        else:
            _attach(self.model, reg.attach_loss_multiplier, "FLOPsRegularizer",
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
        self._integral += self.rate * violation * self.every / float(steps or 100)
        self.strength.assign(self._integral + self.damping * violation)

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


def _labels(layer, count):
    """A name for each of ``count`` probabilities of ``layer``."""
    names = list(getattr(layer, "choice_names", None) or [])
    if len(names) == count:
        return names
    if names and count % len(names) == 0:  # [rows, choices]
        return [f"{i // len(names)}/{names[i % len(names)]}" for i in range(count)]
    return [str(i) for i in range(count)]


def _scalar(tag, value, step):
    """``tf.summary.scalar`` without needing the tensorboard package installed."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata)


_DECISION_COLUMNS = ("entropy", "max_prob", "flips", "decided")


@register
class ArchitectureLogger(keras.callbacks.Callback):
    """Records the architecture distributions at the end of every epoch.

    Writes ``log_dir/<csv_name>`` (columns epoch, key, choice, probability;
    one group per ``arch_key``, or layer name without a key), TensorBoard
    scalars ``architecture/<key>/<choice>`` to ``log_dir``, and at train end
    ``log_dir/<png_name>``: one subplot per group, each choice's probability
    against the epoch (BARS Fig. 5). ``history`` is
    ``{epoch: {key: {choice: probability}}}``. With ``append=True`` an
    existing CSV is read first (e.g. a search resumed by BackupAndRestore).

    How decided each group is (``searchlayers.decision.layer_decision``:
    normalized entropy, largest probability, argmax flips when a
    ``DecisionTracker`` runs, decided) goes to ``log_dir/<decision_name>``
    (columns epoch, key, entropy, max_prob, flips, decided), TensorBoard
    scalars ``decision/<key>/<metric>`` and the subplot titles; ``decisions``
    is ``{epoch: {key: metrics}}``.

    Example:
        >>> logger = ArchitectureLogger("/tmp/arch")
        >>> model.fit(x, y, epochs=5, callbacks=[logger])  # doctest: +SKIP
        >>> logger.history[4]["edge"]["skip_connect"]  # doctest: +SKIP
        0.21
    """

    def __init__(self, log_dir, csv_name="architecture.csv", png_name="architecture.png",
                 tensorboard=True, append=False, decision_name="decision.csv"):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise checks.ArgumentTypeError(
                f"ArchitectureLogger: log_dir must be a folder path, got "
                f"{checks.show(log_dir)} ({type(log_dir).__name__}).")
        self.log_dir, self.csv_name, self.png_name = str(log_dir), csv_name, png_name
        self.tensorboard = checks.boolean("ArchitectureLogger", "tensorboard", tensorboard)
        self.append = checks.boolean("ArchitectureLogger", "append", append)
        self.decision_name = decision_name
        self.history, self.decisions = {}, {}
        self._writer = None
        self._chief = True

    @property
    def csv_path(self):
        """Path of the CSV file.

        Example:
            >>> ArchitectureLogger("logs").csv_path
            'logs/architecture.csv'
        """
        return os.path.join(self.log_dir, self.csv_name)

    @property
    def png_path(self):
        """Path of the PNG figure.

        Example:
            >>> ArchitectureLogger("logs").png_path
            'logs/architecture.png'
        """
        return os.path.join(self.log_dir, self.png_name)

    def distributions(self):
        """``{key: {choice: probability}}`` of the model now.

        Example:
            >>> ArchitectureLogger("logs").distributions()  # doctest: +SKIP
        """
        out = {}
        for key, layer in reg.arch_groups(self.model).items():
            probs = tf.reshape(layer.probabilities(), [-1]).numpy().tolist()
            out[key] = dict(zip(_labels(layer, len(probs)), probs))
        return out

    def on_train_begin(self, logs=None):
        self._chief = _is_chief(self.model)
        if self._chief:
            os.makedirs(self.log_dir, exist_ok=True)
        _check_model_has_search_layers(self.model, "ArchitectureLogger")
        self.history = self._read_csv() if self.append else {}
        if self.tensorboard and self._writer is None and self._chief:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        from searchlayers import decision

        self.history[epoch] = self.distributions()
        self.decisions[epoch] = {
            key: {m: d[m] for m in _DECISION_COLUMNS}
            for key, d in decision.model_decision(self.model).items()
        }
        if self._chief:
            self._write_csv()
        if self._writer is not None:
            with self._writer.as_default():
                for key, probs in self.history[epoch].items():
                    for choice, p in probs.items():
                        _scalar(f"architecture/{key}/{choice}", p, epoch)
                for key, d in self.decisions[epoch].items():
                    for m in ("entropy", "max_prob", "flips"):
                        if d[m] is not None:
                            _scalar(f"decision/{key}/{m}", d[m], epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self.history and self._chief:
            self.plot()

    def _write_csv(self):
        with open(self.csv_path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["epoch", "key", "choice", "probability"])
            for epoch in sorted(self.history):
                for key, probs in self.history[epoch].items():
                    for choice, p in probs.items():
                        out.writerow([epoch, key, choice, f"{p:.6g}"])
        with open(os.path.join(self.log_dir, self.decision_name), "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["epoch", "key", *_DECISION_COLUMNS])
            for epoch in sorted(self.decisions):
                for key, d in self.decisions[epoch].items():
                    out.writerow([epoch, key, *("" if d[m] is None else f"{d[m]:.6g}"
                                                for m in _DECISION_COLUMNS)])

    def _read_csv(self):
        history = {}
        if not os.path.exists(self.csv_path):
            return history
        with open(self.csv_path, newline="") as f:
            for row in csv.DictReader(f):
                group = history.setdefault(int(row["epoch"]), {}).setdefault(row["key"], {})
                group[row["choice"]] = float(row["probability"])
        return history

    def load(self):
        """Reads ``csv_path`` (a finished search's log) into ``history``; returns it.

        Example:
            >>> logger = ArchitectureLogger("logs")
            >>> logger.load()  # doctest: +SKIP
            {0: {'edge': {'skip_connect': 0.2, ...}}, ...}
        """
        self.history = self._read_csv()
        return self.history

    def plot(self, path=None):
        """Draws ``history`` (BARS Fig. 5 style) to ``path`` (default ``png_path``).

        Example:
            >>> logger.plot()  # doctest: +SKIP
            'logs/architecture.png'
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = path or self.png_path
        epochs = sorted(self.history)
        keys = list(self.history[epochs[-1]])
        cols = max(min(len(keys), 3), 1)  # no groups (single path): an empty figure
        rows = max(math.ceil(len(keys) / cols), 1)  # an empty figure has a size too
        fig = Figure(figsize=(4.5 * cols, 3.2 * rows))
        FigureCanvasAgg(fig)
        for i, key in enumerate(keys):
            ax = fig.add_subplot(rows, cols, i + 1)
            for choice in self.history[epochs[-1]][key]:
                ys = [self.history[e].get(key, {}).get(choice, float("nan")) for e in epochs]
                ax.plot(epochs, ys, marker="o", markersize=3, label=choice)
            d = self.decisions.get(epochs[-1], {}).get(key)
            ax.set_title(key if d is None else f"{key}: max p {d['max_prob']:.2f}, "
                         f"H {d['entropy']:.2f}{'' if d['decided'] else ' (undecided)'}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("probability")
            ax.set_ylim(0.0, 1.0)
            if len(self.history[epochs[-1]][key]) <= 12:  # not one entry per channel
                ax.legend(fontsize="x-small")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return path

    def get_config(self):
        return dict(log_dir=self.log_dir, csv_name=self.csv_name, png_name=self.png_name,
                    tensorboard=self.tensorboard, append=self.append,
                    decision_name=self.decision_name)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register
class BNScoreEvaluator(keras.callbacks.Callback):
    """BN-NAS: the BN indicator of every candidate op, epoch by epoch.

    At the end of every epoch it reads each search layer's op scores
    (``searchlayers.bn_score.bn_scores``: ``mean |gamma|`` of each candidate's
    last BatchNorm), ranks the candidates per layer (0 = best), and measures the
    normalized L2 distance between this epoch's ranks and the previous epoch's
    (``bn_score.rank_distance``; 0 = same ranking): the early-bird signal of the
    paper (sec. 3.4.1). ``logs["bn_rank_distance"]`` carries it (NaN at the
    first epoch).

    With ``patience`` it stops training once the distance has stayed
    ``<= tolerance`` for ``patience`` consecutive epochs (not before
    ``min_epochs`` epochs). With ``log_dir`` it writes ``json_name`` (the
    history) every epoch and, at train end, ``png_name``: the epoch-by-epoch
    rank similarity matrix (paper Fig. 4; ``1 - distance / max distance``).

    ``history`` is a list of ``{"epoch", "scores": {layer: [...]}, "ranks":
    {layer: [...]}, "distance"}``; ``scores()`` gives the latest op scores.
    With ``append=True`` a run that resumes (``initial_epoch``, e.g. after
    ``BackupAndRestore``) first reads the history back from ``json_name``, so
    distances and the stable-epoch count continue across the restart.

    Example:
        >>> cb = BNScoreEvaluator("/tmp/bn", patience=2)
        >>> model.fit(ds, epochs=10, callbacks=[cb])  # doctest: +SKIP
        >>> cb.history[-1]["distance"]  # doctest: +SKIP
        0.0
    """

    def __init__(self, log_dir=None, patience=None, tolerance=0.0, min_epochs=0,
                 json_name="bn_scores.json", png_name="bn_rank_similarity.png", append=False):
        super().__init__()
        where = "BNScoreEvaluator"
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int)
                                     or patience < 1):
            raise ValueError(f"{where}: patience must be an integer >= 1 or None, got {patience!r}.")
        if (isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real)
                or not 0.0 <= float(tolerance) <= 1.0):
            raise ValueError(f"{where}: tolerance must be a number in [0, 1], got {tolerance!r}.")
        if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 0:
            raise ValueError(f"{where}: min_epochs must be an integer >= 0, got {min_epochs!r}.")
        if append and log_dir is None:
            raise ValueError(f"{where}: append=True reads the history from log_dir; give a log_dir.")
        self.log_dir = None if log_dir is None else str(log_dir)
        self.patience, self.tolerance, self.min_epochs = patience, float(tolerance), int(min_epochs)
        self.json_name, self.png_name, self.append = json_name, png_name, bool(append)
        self.history = []
        self.stopped_epoch = None
        self._chief = True

    @property
    def json_path(self):
        """Path of the JSON history (None without ``log_dir``)."""
        return None if self.log_dir is None else os.path.join(self.log_dir, self.json_name)

    @property
    def png_path(self):
        """Path of the similarity figure (None without ``log_dir``)."""
        return None if self.log_dir is None else os.path.join(self.log_dir, self.png_name)

    def scores(self):
        """``{layer: np.ndarray}`` op scores of the model now."""
        from searchlayers import bn_score

        return bn_score.bn_scores(self.model)

    def on_train_begin(self, logs=None):
        scores = self.scores()  # a model without MixedOps fails now, with the layer named
        if not any(np.isfinite(s).sum() >= 2 for s in scores.values()):
            raise ValueError(
                f"BNScoreEvaluator: no search layer of model '{self.model.name}' has two "
                f"candidates with a BatchNorm score ({ {k: s.tolist() for k, s in scores.items()} }); "
                "nothing can be ranked. Allowed: MixedOps whose candidate ops end with an "
                "affine BatchNormalization (see searchlayers.bn_score.op_score)."
            )
        self._chief = _is_chief(self.model)
        if self.log_dir is not None and self._chief:
            os.makedirs(self.log_dir, exist_ok=True)
        self.history, self.stopped_epoch = [], None
        if self.append and os.path.exists(self.json_path):
            import json

            with open(self.json_path) as f:
                self.history = json.load(f)

    def stable_epochs(self):
        """Consecutive latest epochs whose rank distance was ``<= tolerance``."""
        count = 0
        for h in reversed(self.history):
            if h["distance"] is None or h["distance"] > self.tolerance:
                break
            count += 1
        return count

    def on_epoch_end(self, epoch, logs=None):
        from searchlayers import bn_score

        self.history = [h for h in self.history if h["epoch"] < epoch]  # a re-run epoch
        scores = self.scores()
        ranking = bn_score.ranks(scores)
        distance = None
        if self.history:
            distance = bn_score.rank_distance(self.history[-1]["ranks"], ranking)
        self.history.append({
            "epoch": int(epoch),
            "scores": {k: [None if v != v else float(v) for v in s] for k, s in scores.items()},
            "ranks": {k: r.tolist() for k, r in ranking.items()},
            "distance": distance,
        })
        if logs is not None:
            logs["bn_rank_distance"] = float("nan") if distance is None else distance
        if (self.patience is not None and self.stable_epochs() >= self.patience
                and epoch + 1 >= self.min_epochs):
            self.stopped_epoch = int(epoch)
            self.model.stop_training = True
        if self.json_path is not None and self._chief:
            import json

            with open(self.json_path, "w") as f:
                json.dump(self.history, f, indent=1)

    def similarity(self):
        """``[epochs, epochs]`` rank similarity in [0, 1] (paper Fig. 4), 1 on the diagonal."""
        import numpy as np

        from searchlayers import bn_score

        n = len(self.history)
        dist = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                d = bn_score.rank_distance(self.history[i]["ranks"], self.history[j]["ranks"])
                dist[i, j] = dist[j, i] = d
        top = dist.max() if n else 0.0
        return 1.0 - dist / top if top > 0 else np.ones((n, n))

    def plot(self, path=None):
        """Draws the similarity matrix to ``path`` (default ``png_path``); returns the path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = path or self.png_path
        if path is None:
            raise ValueError("BNScoreEvaluator.plot: give a path (or log_dir at construction).")
        epochs = [h["epoch"] for h in self.history]
        fig = Figure(figsize=(5, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        image = ax.imshow(self.similarity(), cmap="Blues", vmin=0.0, vmax=1.0, origin="lower",
                          extent=(epochs[0] - 0.5, epochs[-1] + 0.5, epochs[0] - 0.5, epochs[-1] + 0.5))
        fig.colorbar(image, ax=ax, label="rank similarity")
        ax.set_xlabel("epoch")
        ax.set_ylabel("epoch")
        ax.set_title("BN-indicator rank similarity")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return path

    def on_train_end(self, logs=None):
        if self.history and self.png_path is not None and self._chief:
            self.plot()

    def get_config(self):
        return dict(log_dir=self.log_dir, patience=self.patience, tolerance=self.tolerance,
                    min_epochs=self.min_epochs, json_name=self.json_name, png_name=self.png_name,
                    append=self.append)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = [
    "ArchWarmup",
    "ArchitectureLogger",
    "BNScoreEvaluator",
    "EntropyRegularizer",
    "FLOPsRegularizer",
    "SCHEDULES",
    "TemperatureScheduler",
    "schedule_value",
]
