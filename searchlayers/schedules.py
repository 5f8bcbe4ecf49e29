"""Step-aware search schedules: ``"auto"`` (any run length) and ``"paper"``.

The papers' settings were tuned for 50-epoch CIFAR searches: tens of
thousands of architecture steps. A search of a few hundred steps with the
same settings ends where it started (uniform distributions, a derived child
that is the argmax of noise). ``"auto"`` sets the two knobs that decide how far
a search can move from the number of architecture steps ``S``
(``epochs x steps_per_epoch``, warm-up epochs excluded):

1. **Architecture learning rate** ``lr = MARGIN / S``. Adam normalizes the
   gradient, so one step moves a logit by at most about ``lr``; ``S`` steps
   move it by at most ``lr * S``. For the largest of ``n = 8`` softmax
   probabilities to reach 0.9 its logit must lead the others by
   ``log(0.9 * (n - 1) / 0.1) = log 63 ~ 4.1``, and a noisy gradient does not
   point the same way every step, so ``MARGIN = 6``. The rule reproduces
   DARTS' own setting: 50 epochs x 391 steps (CIFAR-10, batch 64) give
   ``6 / 19550 = 3.1e-4`` (DARTS: 3e-4). It never goes below the paper's rate
   (a longer run keeps it) and never above ``LR_MAX``.
2. **Temperature** (and the entropy schedules of BARS / BNAS): the paper's
   start and end values, reached over the run's ``S`` steps (per step)
   instead of over the paper's epoch count. EnTranNAS anneals 5.0 x 0.923 per
   epoch, 0.1 after its 50 epochs; a 3-epoch search would stop at 3.9 (a
   softmax of ``alpha / 3.9`` stays flat), ``"auto"`` reaches 0.1 at its end.
   BNAS' diversity term decays with ``tau = 7.7`` of 50 epochs: ``"auto"``
   keeps that fraction of the run.
3. **FiGS commit** (``"auto"`` only; ``figs_commit``). The FiGS paper anneals
   nothing (``tau = 0.001``, 100 epochs at lr 1.6); ``"auto"`` adds an
   explore-then-commit entropy term on the masks' Bernoulli entropy,
   ``FIGS_EXPLORE = -0.1 -> 0`` over the first half of the run (the demo's
   BARS-style exploration: the masks stay near the cost term's reach while the
   budget multiplier settles) and ``0 -> FIGS_COMMIT = 2`` over the second half.
   A mask channel is *decided* when ``P(mask = 1) <= 0.01`` or ``>= 0.99``
   (``searchlayers.decision.MASK_PROB``: ``|logit| >= log 99 ~ 4.6``, the
   Logistic-noise training sample agrees with the derived ``1[logit > 0]``
   in 99 steps of 100). The entropy gradient on a logit, ``-c p (1 - p) l``,
   and the cost term's, ``lam kappa p (1 - p)``, vanish together at 0 / 1, so
   the commit wins wherever ``c |l| > lam kappa``: every channel off the
   unstable point moves away from it, by about ``lr`` per Adam step, i.e.
   ``log 99 / lr = 23`` steps at the FiGS rate (``LR_MAX = 0.2``; the paper's
   1.6 is above it). Measured on the demo (digits ResNet masks, budgets 0.5 /
   0.25, 5 epochs, 110 steps): a commit of 0.1 left 50 % of the channels at 0 / 1,
   0.5 left 59-99 %, 2 leaves 100 % (``tests/test_planted.py`` asserts it on the
   planted channel task). Under a budget (``FigsCommit.to_budget``, which
   ``examples.figs_search`` and the sweep method ``figs`` use) the commit pulls
   each channel to the child ``budget.fit`` derives (refreshed 5 times over the
   commit) instead of to its own side of 0: a saturated sigmoid gives the cost
   term no gradient, so channels committed while the expected cost is still off
   the budget (the target-mode multiplier had not settled in the demo's 110
   steps: 1.3x and 2x the target) stay there, and ``budget.fit`` then cut
   committed channels (the demo's budget 0.25 child kept 1 stem channel: test
   accuracy 0.908 vs random 0.968). Committed to the fitted child, the masks end
   at 0 / 1 on the budget, and the derived child is the decided masks.

``preset="paper"`` keeps the papers' exact settings (``PAPER``). BN-NAS needs
no schedule (a single-path supernet has no architecture logits).

``SearchSchedule`` applies either as one callback (it sets the architecture
optimizer's learning rate when ``fit`` starts and runs the temperature /
entropy schedules).

Example:
    >>> round(arch_lr(19550, floor=0), 6)      # DARTS' 50 CIFAR epochs
    0.000307
    >>> round(arch_lr(300), 4)                 # a short search on digits
    0.02
    >>> sched = SearchSchedule("gdas")
    >>> model.fit(pairs, epochs=3, callbacks=[sched])  # doctest: +SKIP
"""

import math
import warnings

import numpy as np
import tensorflow as tf

from searchlayers import budget, callback_state, checks
from searchlayers import callbacks as cb
from searchlayers import regularizers as reg
from searchlayers._keras import keras, register

MARGIN = 6.0
LR_MAX = 0.2
FIGS_EXPLORE = -0.1  # FiGS "auto" entropy coefficient at the start (explore) ...
FIGS_COMMIT = 2.0  # ... and at the last step (commit); 0 at half the run
FIGS_KINK = 0.5  # the fraction of the run that explores
FIGS_REFRESH = 5  # FigsCommit.to_budget: budget.fit's child, refreshed this often per commit
PRESETS = ("auto", "paper")
# The papers' settings. temperature: (schedule, start, end[, per-epoch rate]);
# entropy: ("bars", start, end) linear coefficient, or ("bnas", lam, tau_epochs).
PAPER = {
    "darts": dict(arch_lr=3e-4, epochs=50),
    "snas": dict(arch_lr=3e-4, epochs=50, temperature=("exponential", 1.0, 0.03, 0.9)),
    "gdas": dict(arch_lr=3e-4, epochs=50, temperature=("linear", 10.0, 0.1)),
    "bars": dict(arch_lr=3e-4, epochs=50, temperature=("linear", 1.0, 0.1),
                 entropy=("bars", -0.01, 0.01)),
    "bnas": dict(arch_lr=3e-4, epochs=50, entropy=("bnas", 1.0, 7.7)),
    "entrannas": dict(arch_lr=6e-4, epochs=50, temperature=("exponential", 5.0, 0.1, 0.923)),
    "entrannas_dst": dict(arch_lr=6e-3, epochs=50, temperature=("exponential", 1.0, 0.005, 0.9)),
    "figs": dict(arch_lr=1.6, epochs=100),  # tau = 0.001, not annealed
}
METHODS = tuple(PAPER)


def _check(where, method, preset):
    if method not in PAPER:
        raise ValueError(f"{where}: unknown method {method!r}; allowed: "
                         f"{', '.join(map(repr, METHODS))}.")
    if preset not in PRESETS:
        raise ValueError(f"{where}: unknown preset {preset!r}; allowed: 'auto', 'paper'.")


def _check_steps(where, steps):
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{where}: steps must be an integer >= 1 (architecture steps: "
                         f"epochs x steps_per_epoch), got {steps!r}.")
    return steps


def arch_lr(steps, margin=MARGIN, floor=3e-4, high=LR_MAX):
    """The ``"auto"`` architecture learning rate for ``steps`` Adam steps.

    ``clip(margin / steps, floor, high)`` (see the module docstring).

    Example:
        >>> arch_lr(100), arch_lr(10**6)
        (0.06, 0.0003)
    """
    _check_steps("arch_lr", steps)
    return float(min(max(margin / steps, floor), high))


def learning_rate(method, steps, preset="auto"):
    """The architecture learning rate of ``method`` for a run of ``steps``.

    Example:
        >>> learning_rate("entrannas", 100, "paper"), learning_rate("entrannas", 100)
        (0.0006, 0.06)
    """
    _check("learning_rate", method, preset)
    paper = PAPER[method]["arch_lr"]
    return paper if preset == "paper" else arch_lr(steps, floor=paper)


def temperature(method, steps, preset="auto"):
    """The ``TemperatureScheduler`` of ``method`` (None: no temperature schedule).

    ``"auto"``: per step, from the paper's start to its end over ``steps``
    (exponential decay keeps its shape: ``rate = (end / start) ** (1 / steps)``).
    ``"paper"``: the paper's per-epoch schedule.

    Example:
        >>> t = temperature("entrannas", 200)
        >>> round(t.value(0), 3), round(t.value(200), 3), t.per
        (5.0, 0.1, 'step')
    """
    _check("temperature", method, preset)
    if preset == "auto":
        _check_steps("temperature", steps)
    spec = PAPER[method].get("temperature")
    if spec is None:
        return None
    kind, start, end = spec[:3]
    if preset == "paper":
        if kind == "exponential":
            return cb.TemperatureScheduler("exponential", start=start, rate=spec[3],
                                           floor=end if method == "snas" else None)
        return cb.TemperatureScheduler("linear", start=start, end=end,
                                       total=PAPER[method]["epochs"] - 1)
    steps = _check_steps("temperature", steps)
    if kind == "exponential":
        return cb.TemperatureScheduler("exponential", start=start,
                                       rate=(end / start) ** (1.0 / steps), floor=end,
                                       per="step")
    return cb.TemperatureScheduler("linear", start=start, end=end, total=steps, per="step")


def entropy(method, steps, preset="auto"):
    """The ``EntropyRegularizer`` of ``method`` (None: none).

    BARS: linear ``-0.01 -> 0.01`` (over ``steps``, or the paper's epochs);
    BNAS: ``-lam * exp(-t / tau)`` with ``tau`` the paper's fraction of the run;
    FiGS: ``figs_commit`` (``"auto"`` only).

    Example:
        >>> e = entropy("bnas", 500)
        >>> round(e.value(0), 2), round(e.value(77), 3)
        (-1.0, -0.368)
    """
    _check("entropy", method, preset)
    if method == "figs":
        return figs_commit(_check_steps("entropy", steps) if preset == "auto" else steps,
                           preset)
    spec = PAPER[method].get("entropy")
    if spec is None:
        return None
    epochs = PAPER[method]["epochs"]
    if spec[0] == "bnas":
        _, lam, tau = spec
        if preset == "paper":
            return cb.EntropyRegularizer.bnas(lam, tau)
        tau_steps = tau / epochs * _check_steps("entropy", steps)
        return cb.EntropyRegularizer("exponential", start=-lam, rate=math.exp(-1.0 / tau_steps),
                                     per="step", reduction="mean")
    _, start, end = spec
    if preset == "paper":
        return cb.EntropyRegularizer.bars(epochs, start=start, end=end)
    return cb.EntropyRegularizer("linear", start=start, end=end,
                                 total=_check_steps("entropy", steps), per="step")


@register
class FigsCommit(callback_state.Resumable, cb.EntropyRegularizer):
    """FiGS' ``"auto"`` entropy term: ``explore -> 0`` over the first ``kink``
    of ``total`` steps, then ``0 -> commit`` (see the module docstring); with
    ``to_budget`` (set at run time, not part of the config) the commit pulls the
    masks to the child fitted to a cost target.

    Example:
        >>> c = FigsCommit(total=100)
        >>> c.value(0), c.value(50), c.value(75), c.value(100)
        (-0.1, 0.0, 1.0, 2.0)
    """

    def __init__(self, total, explore=FIGS_EXPLORE, commit=FIGS_COMMIT, kink=FIGS_KINK,
                 **kwargs):
        where = "FigsCommit"
        self.target, self.metric, self._kept = None, None, {}
        self.explore = checks.number(where, "explore", explore, high=0)
        self.commit = checks.number(where, "commit", commit, low=0)
        self.kink = checks.number(where, "kink", kink, low=0, high=1, low_open=True,
                                  high_open=True)  # the exploring fraction of the run
        kwargs.update(schedule="linear", start=self.explore, end=self.commit, per="step")
        super().__init__(total=_check_steps(where, total), **kwargs)

    def value(self, t):
        f = min(max(t, 0) / self.total, 1.0)
        if f < self.kink:
            return float(self.explore * (1.0 - f / self.kink))
        return float(self.commit * (f - self.kink) / (1.0 - self.kink))

    def to_budget(self, target, metric):
        """Commits to the child ``budget.fit(model, target, metric)`` derives
        (refreshed ``FIGS_REFRESH`` times over the commit) instead of each
        channel's own side of 0: the commit term becomes the cross-entropy of each
        channel's ``P(mask = 1)`` to that child's 0 / 1. A saturated sigmoid gives
        the cost term no gradient, so masks committed while the expected cost is
        off the budget stay there and ``budget.fit`` would then cut committed
        channels; committed to the fitted child they end on the budget.

        Example:
            >>> FigsCommit(110).to_budget(5.6e5, "macs").target
            560000.0
            >>> FigsCommit(110).to_budget(float("nan"), "macs")
            Traceback (most recent call last):
            ...
            ValueError: FigsCommit.to_budget: target must be a finite number > 0, got nan.
        """
        where = "FigsCommit.to_budget"  # now, not when the commit starts mid-search
        target = reg.check_positive(target, "target", where)
        reg.check_metric(metric, where)
        self.target, self.metric = target, metric
        return self

    def on_train_begin(self, logs=None):
        self._kept = {}
        if self.target is not None:  # before the loss is attached (and traced)
            self._kept = {key: (layer, tf.Variable(tf.ones_like(layer.arch("logits")),
                                                   trainable=False))
                          for key, layer in reg.arch_groups(reg.unwrap(self.model)).items()}
        if self._kept:  # the step of the fitted child (a loss variable: loss_variables)
            self._refreshed = tf.Variable(-1, dtype=tf.int64, trainable=False)
            callback_state.keep_in_checkpoints(self.model, self.state_key(),
                                               refreshed=self._refreshed)
        super().on_train_begin(logs)

    def state_key(self):
        """The checkpoint key of the commit's state (``callback_state``)."""
        return "FigsCommit"

    def loss_variables(self):
        kept = {f"kept_{i}": v for i, (_, v) in enumerate(self._kept.values())}
        return {**super().loss_variables(), **kept}

    def on_train_batch_begin(self, batch, logs=None):
        step = self._epoch * self._steps() + batch
        start = self.kink * self.total
        every = max(int((self.total - start) / FIGS_REFRESH), 1)
        if self._kept and step >= start:
            refreshed = int(self._refreshed.numpy())
            if refreshed < 0 or step - refreshed >= every:
                self._refreshed.assign(step)
                self._fit()
        super().on_train_batch_begin(batch, logs)

    def _fit(self):
        with warnings.catch_warnings():  # an unreachable target was said when the search began
            warnings.simplefilter("ignore", budget.BudgetWarning)
            choices = budget.fit(reg.unwrap(self.model), self.target, self.metric
                                 ).architecture.choices
        for layer, kept in self._kept.values():
            mask = np.zeros(kept.shape, np.float32)
            mask[list(choices[layer.name])] = 1.0
            kept.assign(mask)

    def loss(self):
        """``c H`` while exploring (``c < 0``); committing, ``c H`` or with
        ``to_budget`` ``c`` times the cross-entropy to the fitted child."""
        if not self._kept:
            return super().loss()
        c = self.coefficient
        cross = tf.add_n([tf.reduce_sum(tf.math.softplus(layer.arch("logits"))
                                        - kept * layer.arch("logits"))
                          for layer, kept in self._kept.values()])
        return tf.minimum(c, 0.0) * reg.entropy(self.model, self.reduction) \
            + tf.maximum(c, 0.0) * cross

    def get_config(self):
        return dict(total=self.total, explore=self.explore, commit=self.commit, kink=self.kink,
                    reduction=self.reduction)


def figs_commit(steps, preset="auto"):
    """FiGS' entropy term for a run of ``steps``: ``FigsCommit`` for ``"auto"``,
    None for ``"paper"`` (the paper has none).

    Example:
        >>> figs_commit(110).value(110), figs_commit(110, "paper")
        (2.0, None)
    """
    _check("figs_commit", "figs", preset)
    return FigsCommit(steps) if preset == "auto" else None


def set_arch_lr(model, value):
    """Sets the architecture optimizer's learning rate of ``model`` (a
    ``SearchModel``, or a model compiled with ``searchlayers.joint_optimizer``).

    Example:
        >>> set_arch_lr(search, 0.02)  # doctest: +SKIP
    """
    opt = getattr(model, "arch_optimizer", None)
    if opt is None:  # larq CaseOptimizer: the first (predicate, optimizer) pair is arch_*
        pairs = getattr(getattr(model, "optimizer", None), "pred_opt_pairs", None) or []
        opt = pairs[0][1] if pairs else None
    if opt is None:
        raise ValueError(
            f"set_arch_lr: model '{model.name}' has no architecture optimizer; use "
            "searchlayers.SearchModel or compile with searchlayers.joint_optimizer().")
    lr = opt.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        raise ValueError(f"set_arch_lr: model '{model.name}'s architecture learning rate is a "
                         "schedule; give the optimizer a constant rate for schedule='auto'.")
    keras.backend.set_value(lr, value)


@register
class SearchSchedule(keras.callbacks.Callback):
    """One callback for a method's step-aware (``"auto"``) or paper schedule.

    When ``fit`` starts it counts the architecture steps ``S = (epochs -
    warmup) x steps_per_epoch``, sets the architecture optimizer's learning
    rate to ``learning_rate(method, S, preset)`` and runs the method's
    temperature / entropy schedules (``temperature``, ``entropy``). Do not
    add another ``TemperatureScheduler`` or ``EntropyRegularizer`` next to it.

    Args:
        method: one of ``METHODS``.
        preset: ``"auto"`` or ``"paper"``.
        warmup: epochs of ``ArchWarmup`` (no architecture steps).
        lr: False leaves the learning rate alone (e.g. a joint-training user
            who set it).

    Example:
        >>> s = SearchSchedule("gdas")
        >>> search.fit(pairs, epochs=4, callbacks=[s])  # doctest: +SKIP
        >>> s.arch_steps, s.arch_lr  # doctest: +SKIP
        (200, 0.03)
    """

    def __init__(self, method, preset="auto", warmup=0, lr=True):
        super().__init__()
        _check("SearchSchedule", method, preset)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"SearchSchedule: warmup must be an integer >= 0, got {warmup!r}.")
        self.method, self.preset, self.warmup, self.lr = method, preset, warmup, bool(lr)
        self.arch_steps, self.arch_lr, self._inner = None, None, []

    def steps(self):
        """The architecture steps of this ``fit`` (needs ``steps_per_epoch`` known)."""
        params = self.params or {}
        if not params.get("steps"):
            raise ValueError("SearchSchedule: fit could not infer the number of steps per "
                             "epoch; pass `steps_per_epoch` to fit.")
        return max(params["epochs"] - self.warmup, 1) * params["steps"]

    def on_train_begin(self, logs=None):
        self.arch_steps = self.steps()
        total = self.params["epochs"] * self.params["steps"]  # schedules span the whole run
        self._inner = [c for c in (temperature(self.method, total, self.preset),
                                   entropy(self.method, total, self.preset)) if c is not None]
        for inner in self._inner:
            inner.set_model(self.model)
            inner.set_params(self.params)
            inner.on_train_begin(logs)
        if self.lr:
            self.arch_lr = learning_rate(self.method, self.arch_steps, self.preset)
            set_arch_lr(self.model, self.arch_lr)

    def on_epoch_begin(self, epoch, logs=None):
        for inner in self._inner:
            inner.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        for inner in self._inner:
            inner.on_train_batch_begin(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for inner in self._inner:
            inner.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for inner in self._inner:
            inner.on_train_end(logs)

    def get_config(self):
        return dict(method=self.method, preset=self.preset, warmup=self.warmup, lr=self.lr)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = [
    "FIGS_COMMIT",
    "FIGS_EXPLORE",
    "FIGS_KINK",
    "FIGS_REFRESH",
    "FigsCommit",
    "LR_MAX",
    "MARGIN",
    "METHODS",
    "PAPER",
    "PRESETS",
    "SearchSchedule",
    "arch_lr",
    "entropy",
    "figs_commit",
    "learning_rate",
    "set_arch_lr",
    "temperature",
]
