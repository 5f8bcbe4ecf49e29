"""Callbacks that steer a search during ``model.fit``, one module a concern.

- ``schedules``: the schedule shapes (``Constant``, ``Exponential``,
  ``Linear``, ``Cosine``; ``make``) and ``TemperatureScheduler``, which
  anneals the search layers' relaxation temperature.
- ``regularization``: ``EntropyRegularizer`` (``coeff(t) * H(p)``, BARS, BNAS),
  ``FLOPsRegularizer`` (expected cost: additive, BARS multiplicative, or to a
  budget) and ``ArchWarmup`` (the architecture frozen for the first epochs).
- ``logging``: ``ArchitectureLogger``, distributions per epoch to CSV,
  TensorBoard, PNG.
- ``bn_scoring``: ``BNScoreEvaluator``, BN-NAS' op scores and rank stability per
  epoch (early bird).

Every schedule is a pure function of the epoch (or the global step), so a
search resumed by ``keras.callbacks.BackupAndRestore`` continues with the same
values. The method presets (step-aware ``"auto"`` / ``"paper"``) that pick a
shape for a run are ``searchlayers.schedules``.

Example:
    >>> from searchlayers import callbacks
    >>> sched = callbacks.TemperatureScheduler()      # EnTranNAS: 5.0 x 0.923 per epoch
    >>> round(sched.value(2), 4)
    4.2596
"""

from searchlayers.callbacks.bn_scoring import BNScoreEvaluator
from searchlayers.callbacks.logging import ArchitectureLogger
from searchlayers.callbacks.regularization import (
    MODES,
    ArchWarmup,
    EntropyRegularizer,
    FLOPsRegularizer,
)
from searchlayers.callbacks.schedules import (
    PER,
    SCHEDULES,
    Constant,
    Cosine,
    Exponential,
    Linear,
    Schedule,
    TemperatureScheduler,
    schedule_value,
)

__all__ = [
    "ArchWarmup",
    "ArchitectureLogger",
    "BNScoreEvaluator",
    "Constant",
    "Cosine",
    "EntropyRegularizer",
    "Exponential",
    "FLOPsRegularizer",
    "Linear",
    "MODES",
    "PER",
    "SCHEDULES",
    "Schedule",
    "TemperatureScheduler",
    "schedule_value",
]
