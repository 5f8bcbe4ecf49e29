"""The examples' search procedures, registered as sweep methods (``searchlayers.tuning``).

Importing this module registers:

* ``darts``, ``gdas``, ``snas``: ``examples.darts_search`` (DARTS cell space;
  softmax bi-level, hard Gumbel bi-level, Gumbel joint) with the cost term
  ``lam * E[cost] / target`` (``budget_term``); ``temperature`` replaces the
  method's schedule. By default (``budget_mode="target"``) the term's strength
  adapts to the budget and the child is derived to it (``searchlayers.budget``).
* ``figs``: ``examples.figs_search`` (FiGS masks in ``models.figs``' ResNet or
  MobileNetV2): ``task + lam * E[cost] / target`` with target = budget times the
  unmasked network's cost; the search stops at the target.
* ``bnas``: ``examples.bnas_search`` (binary cells, diversity term) with the
  same cost term on equivalent ops; exported with LCE too.
* ``bars``: ``models.bars``' supernet searched as ``examples.bars_search`` does
  (bi-level, BARS' temperature / entropy schedules, ``ArchWarmup``) but with the
  budget term in place of eq. 7 (whose gradient does not depend on the target,
  see ``budget_term``), derived to the budget (``fitted``; "additive": BARS'
  best of K = 8 samples), retrained from fresh weights, exported with LCE too.

The target is ``budget`` times the supernet's expected cost when the search
starts (``searchlayers.tuning.budget_target``); in the target mode one that no
child of the space reaches becomes the closest one that does, said once
(``reachable``), and the report's "asked" stays the requested one.

``TrialSpec.options`` sets the spaces' sizes: ``channels``, ``cells``,
``steps`` (DARTS, BNAS), ``budget_mode`` ("target" or "additive", DARTS and
FiGS), ``warmup`` (DARTS-space epochs that train only the weights,
``ArchWarmup``), ``space`` and ``network`` (keyword arguments of the FiGS
network), ``arch_lr`` (DARTS family and BARS: "auto" by default, the step-aware
rule of ``searchlayers.schedules``), ``rule`` (DARTS derivation), ``gamma``
(BNAS), ``stages``, ``k``, ``schedule`` (BARS), ``entropy`` (DARTS family and
FiGS: BARS' explore-then-commit entropy schedule up to this coefficient, ``commit``),
``mask_temperature`` (FiGS' Logistic-Sigmoid, default the paper's 0.001; at 0.1
the data gradient reaches every channel, ``searchlayers.planted``), ``schedule``
(FiGS: "auto", the default, adds ``schedules.figs_commit``, which ends every
mask channel at P <= 0.01 or >= 0.99; "paper": no entropy term).

Example:
    >>> import examples.methods  # doctest: +SKIP
    >>> from searchlayers import tuning
    >>> tuning.method_names()  # doctest: +SKIP
    ['bars', 'bnas', 'darts', 'figs', 'gdas', 'snas']
"""

from searchlayers import (ArchWarmup, EntropyRegularizer, FLOPsRegularizer, SearchModel, budget,
                          datasets, derive, schedules, tuning)
from searchlayers._keras import keras
from searchlayers.transforms import insert_masks

from examples import bars_search, bnas_search, common, darts_search, figs_search
from models import bars, bnas
from models.figs import SPACES


def budget_term(supernet, spec, mode=None):
    """The cost term ``lam * E[cost] / target``, target = ``budget`` times the
    supernet's initial expected cost (FiGS' additive form, for every method).
    ``mode`` (default ``budget_mode(spec)``): "target" makes ``lam`` the
    starting value of a multiplier that settles the expected cost on the target.

    BARS' multiplicative ``CE * (cost / target)`` is no sweep axis here: over the
    target its gradient only scales with ``1 / target``, which Adam's
    normalization removes, so every unreachable target searches alike.

    Example:
        >>> budget_term(supernet, tuning.TrialSpec("darts", budget=0.5))  # doctest: +SKIP
    """
    mode = mode or budget_mode(spec)
    target = tuning.budget_target(supernet, spec)
    term = FLOPsRegularizer(budget=reachable(supernet, target, spec) if mode == "target"
                            else target, metric=spec.cost_metric(), mode=mode,
                            strength=spec.lam)
    term.requested = target
    return term


def reachable(supernet, target, spec):
    """``target`` moved to the closest cost the space can derive when it cannot
    derive it (``budget.clamp``: said once; in the DARTS space a target below every
    connected child would push every edge to "none").

    Example:
        >>> reachable(supernet, 1e3, tuning.TrialSpec("darts", budget=0.01))  # doctest: +SKIP
        104576.0
    """
    return budget.clamp(supernet, target, spec.cost_metric(),
                        where=f"{spec.method} budget {spec.budget:g}")[0]


def with_requested(history, metric, requested):
    """``history`` with ``budget_requested_<metric>``: the budget asked for before
    ``reachable`` moved it (the report's "asked")."""
    return {**history, f"budget_requested_{metric}": [float(requested)]}


def budget_mode(spec):
    """"target" (the default: the search settles on the budget and ``fitted``
    derives the child whose exact cost is closest to it, ``searchlayers.budget``)
    or "additive" (``options["budget_mode"]``: the fixed-strength term and the
    plain derive rule).

    Example:
        >>> budget_mode(tuning.TrialSpec("darts", options={"budget_mode": "additive"}))
        'additive'
    """
    mode = spec.options.get("budget_mode", "target")
    if mode not in ("target", "additive"):
        raise ValueError(f"examples.methods: options['budget_mode'] must be 'target' or "
                         f"'additive', got {mode!r}.")
    return mode


def fitted(supernet, target, spec, fallback):
    """The child derived to ``target`` (``budget.fit``) in the target mode, else
    ``fallback()``; the fit's asked / got go to the child's architecture meta.

    Example:
        >>> child = fitted(supernet, 2e4, spec, lambda: derive(supernet))  # doctest: +SKIP
    """
    if budget_mode(spec) != "target":
        return fallback()
    fit = budget.fit(supernet, target, spec.cost_metric())
    child = derive(supernet, architecture=fit.architecture)
    child.architecture.meta.update(budget=fit.to_dict())
    return child


def commit(spec, steps):
    """BARS' entropy schedule, ``-c -> +c`` per step over the search's ``steps``
    (explore, then commit: a positive coefficient pushes each distribution to one
    choice), for ``options["entropy"] = c``; [] without it. A budget term pinned
    on its target leaves the choices it cannot tell apart (DARTS' pools and
    "none": no MACs; FiGS channels of one cost) mixed: this decides them.

    Example:
        >>> [type(c).__name__ for c in commit(tuning.TrialSpec("darts",
        ...                                   options={"entropy": 0.05}), 40)]
        ['EntropyRegularizer']
    """
    c = spec.options.get("entropy")
    if not c:
        return []
    return [EntropyRegularizer("linear", start=-float(c), end=float(c), total=steps, per="step")]


def _steps_per_epoch(name, spec):
    """Architecture steps per search epoch: bi-level pairs, else the train split."""
    if spec.steps_per_epoch is not None:
        return spec.steps_per_epoch
    data = (datasets.search_pairs("digits", spec.batch_size) if darts_search.BILEVEL[name]
            else datasets.load("digits", "train", batch_size=spec.batch_size,
                               drop_remainder=True))
    return int(data.cardinality())


def _warmup(options):
    """``ArchWarmup`` for ``options["warmup"]`` epochs of weight-only training (BARS)."""
    epochs = int(options.get("warmup", 0))
    return [ArchWarmup(epochs)] if epochs else []


def arch_lr(name, spec):
    """``options["arch_lr"]``, or for "auto" (the default) the step-aware rule of
    ``searchlayers.schedules`` for the search's architecture steps (epochs after
    the warm-up times the steps per epoch: bi-level pairs, or the train split
    for a joint search).

    Example:
        >>> arch_lr("darts", tuning.TrialSpec("darts", options={"arch_lr": 0.01}))
        0.01
        >>> arch_lr("darts", tuning.TrialSpec("darts", epochs=5, steps_per_epoch=10,
        ...                                   options={"warmup": 1}))  # 6 / 40 steps
        0.15
    """
    value = spec.options.get("arch_lr", "auto")
    if value != "auto":
        return value
    epochs = max(spec.epochs - int(spec.options.get("warmup", 0)), 1)
    return schedules.learning_rate(name, epochs * _steps_per_epoch(name, spec))


def darts_family(name):
    """The ``search(spec)`` of DARTS-space method ``name`` ("darts", "gdas", "snas").

    Example:
        >>> searched = darts_family("gdas")(tuning.TrialSpec("gdas", epochs=1))  # doctest: +SKIP
    """
    def search(spec):
        o = spec.options
        supernet = darts_search.build(name, channels=o.get("channels", 8),
                                      cells=o.get("cells", 3), steps=o.get("steps", 2))
        term = budget_term(supernet, spec)
        supernet, history = darts_search.search(
            name, spec.epochs, supernet=supernet, batch_size=spec.batch_size,
            arch_lr=arch_lr(name, spec), verbose=spec.verbose,
            extra_callbacks=[term, *_warmup(o), *spec.callbacks(),
                             *commit(spec, spec.epochs * _steps_per_epoch(name, spec))],
            temperature=spec.temperature_scheduler(), steps_per_epoch=spec.steps_per_epoch)
        rule = o.get("rule", "argmax")
        child = (darts_search.derive_child(supernet, rule) if rule == "top2" else
                 fitted(supernet, term.budget, spec,
                        lambda: darts_search.derive_child(supernet, rule)))
        return tuning.Searched(supernet, child,
                               with_requested(history, term.metric, term.requested))

    return search


def darts_retrain(child, spec):
    """``examples.darts_search.retrain`` (fresh weights, SGD cosine).

    Example:
        >>> model, accuracy = darts_retrain(child, spec)  # doctest: +SKIP
    """
    return darts_search.retrain(child, spec.retrain_epochs, spec.batch_size)


def figs(spec):
    """FiGS: masks after every conv / dense of a ``models.figs`` network, searched
    under ``budget`` times the unmasked network's cost, derived by slicing.

    Example:
        >>> searched = figs(tuning.TrialSpec("figs", budget=0.5, epochs=1))  # doctest: +SKIP
    """
    o = spec.options
    shape = datasets.info("digits").input_shape
    base = SPACES[o.get("space", "resnet")](shape, 10, **o.get("network", {}))
    requested = tuning.budget_target(base, spec)
    supernet = insert_masks(base, temperature=o.get("mask_temperature", 0.001))
    target = reachable(supernet, requested, spec) if budget_mode(spec) == "target" else requested
    lr = o.get("arch_lr", 0.05)
    steps = spec.epochs * (spec.steps_per_epoch or figs_search.train_steps(spec.batch_size))
    preset = o.get("schedule", "auto")
    figs_search.search(supernet, spec.cost_metric(), target, spec.lam, spec.epochs,
                       schedules.learning_rate("figs", steps, preset) if lr == "auto" else lr,
                       spec.batch_size, spec.seed, spec.verbose,
                       extra_callbacks=[*spec.callbacks(), *figs_commit(spec, steps, preset)],
                       steps_per_epoch=spec.steps_per_epoch,
                       mode=budget_mode(spec))
    history = supernet.history.history if supernet.history is not None else {}
    child = fitted(supernet, target, spec, lambda: derive(supernet, "expected"))
    return tuning.Searched(supernet, child,
                           with_requested(history, spec.cost_metric(), requested))


def figs_commit(spec, steps, preset="auto"):
    """FiGS' entropy term over the search's ``steps``: ``options["entropy"] = c``
    gives BARS' ``-c -> +c`` (``commit``), else ``schedules.figs_commit`` (the
    ``"auto"`` explore-then-commit that ends every channel at 0 / 1; none for
    ``"paper"``).

    Example:
        >>> [type(c).__name__ for c in figs_commit(tuning.TrialSpec("figs"), 110)]
        ['FigsCommit']
    """
    if spec.options.get("entropy"):
        return commit(spec, steps)
    found = schedules.figs_commit(steps, preset)
    return [] if found is None else [found]


def figs_retrain(child, spec):
    """``examples.figs_search.retrain``: fine-tunes the sliced child's inherited weights.

    Example:
        >>> model, accuracy = figs_retrain(child, spec)  # doctest: +SKIP
    """
    return child, float(figs_search.retrain(child, spec.retrain_epochs, spec.batch_size,
                                            spec.seed))


def bnas_method(spec):
    """BNAS with the cost term on equivalent ops; Zeroise-gamma derive.

    Example:
        >>> searched = bnas_method(tuning.TrialSpec("bnas", epochs=1))  # doctest: +SKIP
    """
    o = spec.options
    supernet = bnas_search.build(o.get("channels", 8), o.get("cells", 3), o.get("steps", 2))
    supernet, history = bnas_search.search(
        spec.epochs, batch_size=spec.batch_size, arch_lr=o.get("arch_lr", 3e-3),
        verbose=spec.verbose, supernet=supernet,
        extra_callbacks=[budget_term(supernet, spec, mode="additive"), *spec.callbacks()],
        steps_per_epoch=spec.steps_per_epoch)
    return tuning.Searched(supernet, bnas.derive_bnas(supernet, o.get("gamma", 1.0)), history)


def bnas_retrain(child, spec):
    """``examples.bnas_search.retrain`` (fresh weights, SGD cosine).

    Example:
        >>> model, accuracy = bnas_retrain(child, spec)  # doctest: +SKIP
    """
    return bnas_search.retrain(child, spec.retrain_epochs, spec.batch_size)


def bars_method(spec):
    """BARS: ``models.bars.bars_supernet`` on digits, searched bi-level under the
    budget term with BARS' temperature and entropy schedules
    (``schedules.SearchSchedule("bars")``, ``options["schedule"]`` "auto" or
    "paper"; the architecture learning rate its rule, or ``options["arch_lr"]``)
    after ``options["warmup"]`` (default 1) weight-only epochs.

    Example:
        >>> searched = bars_method(tuning.TrialSpec("bars", budget=0.5, epochs=2))  # doctest: +SKIP
    """
    o = spec.options
    supernet = bars.bars_supernet(datasets.info("digits").input_shape, 10,
                                  channels=o.get("channels", 8), stages=o.get("stages", 2),
                                  cells=o.get("cells", 2), steps=o.get("steps", 2))
    term = budget_term(supernet, spec)
    lr = o.get("arch_lr", "auto")
    model = SearchModel(supernet, bilevel=True, arch_optimizer=keras.optimizers.Adam(
        3e-3 if lr == "auto" else lr, beta_1=0.5, beta_2=0.999))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=common.LOSS, metrics=["accuracy"])
    warmup = int(o.get("warmup", 1))
    found = [schedules.SearchSchedule("bars", preset=o.get("schedule", "auto"), warmup=warmup,
                                      lr=lr == "auto"), ArchWarmup(warmup)]
    data = datasets.search_pairs("digits", spec.batch_size)
    history = model.fit(data.repeat() if spec.steps_per_epoch else data, epochs=spec.epochs,
                        steps_per_epoch=spec.steps_per_epoch, verbose=spec.verbose,
                        callbacks=[*found, term, *spec.callbacks()])
    validation = datasets.arrays("digits", "validation")
    child = fitted(supernet, term.budget, spec, lambda: bars.derive_bars(
        model, validation, k=o.get("k", 8), seed=spec.seed)[0])
    return tuning.Searched(supernet, child,
                           with_requested(history.history, term.metric, term.requested))


def bars_retrain(child, spec):
    """``examples.bars_search.retrain`` (fresh weights, Adam).

    Example:
        >>> model, accuracy = bars_retrain(child, spec)  # doctest: +SKIP
    """
    return bars_search.retrain(child, spec.retrain_epochs, spec.batch_size)


for _name in darts_search.MODES:
    tuning.register_method(_name, darts_family(_name), darts_retrain,
                           uses=("budget", "lam", "temperature"))
tuning.register_method("figs", figs, figs_retrain)
tuning.register_method("bnas", bnas_method, bnas_retrain, metric="equivalent_ops", lce=True)
tuning.register_method("bars", bars_method, bars_retrain, metric="equivalent_ops", lce=True)
