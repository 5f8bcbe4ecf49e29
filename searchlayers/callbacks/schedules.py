"""Schedule shapes, and the callbacks that apply one while a search trains.

A shape is a small value object whose ``value(t)`` is a pure function of the
time ``t`` (an epoch, or the global step ``epoch * steps_per_epoch + batch``):
``Constant``, ``Exponential``, ``Linear``, ``Cosine``; ``make`` builds one from
its name. A ``Scheduled`` callback recomputes its shape's value in
``on_epoch_begin`` / ``on_train_batch_begin`` and assigns it to a variable, so a
search resumed by ``keras.callbacks.BackupAndRestore`` continues with the same
values and the traced train function never retraces. ``TemperatureScheduler``
anneals the search layers' temperature; ``EntropyRegularizer``
(``callbacks.regularization``) schedules its coefficient the same way.

The shapes live here, not in ``searchlayers.schedules``: that module picks a
method's shape and end points for a run of ``S`` steps (the ``"auto"`` /
``"paper"`` presets) and builds these callbacks from them, so it sits above this
package; shapes kept there would make the callbacks import their own caller.

Example:
    >>> Linear(start=10.0, end=0.0, total=10).value(5)
    5.0
    >>> round(make("exponential", start=5.0, rate=0.923).value(2), 4)  # EnTranNAS
    4.2596
"""

import dataclasses
import math

from searchlayers import checks
from searchlayers import regularizers as reg
from searchlayers._keras import keras, register
from searchlayers.layers.base import search_layers
from searchlayers.relax import check_temperature
from searchlayers.search import tie_arch_variables

PER = ("epoch", "step")


class Schedule:
    """A value as a pure function of ``t`` (an epoch or a global step)."""

    name = None

    def value(self, t):
        """The value at ``t``."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Constant(Schedule):
    """``start`` at every ``t``.

    Example:
        >>> Constant(0.01).value(99)
        0.01
    """

    start: float
    name = "constant"

    def value(self, t):
        return float(self.start)


@dataclasses.dataclass(frozen=True)
class Exponential(Schedule):
    """``start * rate**t``.

    Example:
        >>> Exponential(start=-1.0, rate=0.5).value(2)
        -0.25
    """

    start: float
    rate: float
    name = "exponential"

    def value(self, t):
        return float(self.start * self.rate**t)


@dataclasses.dataclass(frozen=True)
class _Ramp(Schedule):
    """From ``start`` to ``end`` over ``total`` units of ``t``, then ``end``."""

    start: float
    end: float
    total: float

    def progress(self, t):
        """The fraction of the ramp done at ``t``, in [0, 1]."""
        return min(max(t, 0) / self.total, 1.0)


class Linear(_Ramp):
    """Linear ``start -> end`` over ``total``, then ``end``.

    Example:
        >>> Linear(start=-1.0, end=1.0, total=4).value(1), Linear(0.0, 1.0, 4).value(9)
        (-0.5, 1.0)
    """

    name = "linear"

    def value(self, t):
        return float(self.start + (self.end - self.start) * self.progress(t))


class Cosine(_Ramp):
    """Half cosine ``start -> end`` over ``total``, then ``end``.

    Example:
        >>> Cosine(start=1.0, end=0.0, total=2).value(1)
        0.5
    """

    name = "cosine"

    def value(self, t):
        return float(self.end + (self.start - self.end) * 0.5
                     * (1.0 + math.cos(math.pi * self.progress(t))))


SHAPES = {shape.name: shape for shape in (Constant, Exponential, Linear, Cosine)}
SCHEDULES = tuple(SHAPES)


def make(schedule, start, end=None, rate=None, total=None, where="make"):
    """The shape named ``schedule`` (one of ``SCHEDULES``), its arguments checked;
    the ones it does not use are ignored. ``where`` names the caller in errors.

    Example:
        >>> make("cosine", start=1.0, end=0.0, total=10)
        Cosine(start=1.0, end=0.0, total=10.0)
        >>> make("linear", start=1.0)
        Traceback (most recent call last):
        ...
        ValueError: make: schedule 'linear' needs `end` and `total`.
    """
    checks.choice(where, "schedule", schedule, SCHEDULES)
    start = checks.number(where, "start", start)
    if schedule == "constant":
        return Constant(start)
    if schedule == "exponential":
        return Exponential(start, reg.check_positive(rate, "rate", where))
    if end is None or total is None:
        raise ValueError(f"{where}: schedule {schedule!r} needs `end` and `total`.")
    return SHAPES[schedule](start, checks.number(where, "end", end),
                            reg.check_positive(total, "total", where))


def schedule_value(schedule, t, start, end=None, rate=None, total=None):
    """The value of the shape named ``schedule`` at time ``t`` (``make(...).value(t)``).

    Example:
        >>> schedule_value("linear", 5, start=10.0, end=0.0, total=10)
        5.0
    """
    return make(schedule, start, end, rate, total, where="schedule_value").value(t)


class Scheduled(keras.callbacks.Callback):
    """Base: applies ``value(t)`` (its ``shape``'s by default) each epoch or step
    through ``_apply``. Subclasses set ``schedule, start, end, rate, total``
    (their config) and ``shape``."""

    def __init__(self, per="epoch"):
        super().__init__()
        self.per = checks.choice(type(self).__name__, "per", per, PER)
        self._epoch = 0

    def value(self, t):
        """The schedule's value at epoch or global step ``t`` (pure)."""
        return self.shape.value(t)

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

    def get_config(self):
        return dict(schedule=self.schedule, start=self.start, end=self.end, rate=self.rate,
                    total=self.total, per=self.per)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register
class TemperatureScheduler(Scheduled):
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
        self.shape = make(schedule, start, end, rate, total, where=where)
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
        value = super().value(t)
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
        epochs = (self.params or {}).get("epochs")
        if epochs:  # a temperature the run would reach too low: now, not epochs later
            self.value(epochs * self._steps() - 1 if self.per == "step" else epochs - 1)

    def _apply(self, value):
        for layer in self._targets:
            layer.temperature.assign(value)

    def get_config(self):
        return dict(super().get_config(), floor=self.floor, layers=self.layers, keys=self.keys)


__all__ = [
    "Constant",
    "Cosine",
    "Exponential",
    "Linear",
    "PER",
    "SCHEDULES",
    "Schedule",
    "Scheduled",
    "TemperatureScheduler",
    "make",
    "schedule_value",
]
