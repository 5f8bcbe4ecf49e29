"""Sweeps with keras-tuner: one trial per setting of a search method's hyperparameters.

A trial runs a registered *method* (``register_method``) for one setting of
``method``, ``budget``, ``lam`` and ``temperature`` (a ``TrialSpec``):

1. ``method.search(spec)`` builds the supernet, searches it and derives the
   child (``Searched``); it runs inside ``spec.strategy.scope()`` when the
   tuner has a ``tf.distribute`` strategy (data-parallel search in one trial).
2. ``method.retrain(child, spec)`` retrains the child: ``(model, accuracy)``.
3. The tuner records the test accuracy, the cost profile of the retrained
   model (``searchlayers.cost.profile``), its ``Architecture``, the size of its
   TFLite (and, for binary methods, LCE) flatbuffer, the search and retrain
   seconds, and the per-epoch architecture distributions
   (``ArchitectureLogger``), in ``<project>/trial_<id>/``.

keras-tuner's ``Tuner`` rejects tf_keras models, so ``SweepTuner`` is a
``BaseTuner`` with its own ``run_trial``, driven by any keras-tuner Oracle
("random", "bayesian", "hyperband", "grid"). ``overwrite=False`` resumes a
stopped sweep: finished trials stay, a trial that was running is run again.
Chief / worker tuning uses keras-tuner's variables: ``KERASTUNER_TUNER_ID``
("chief" or a worker id), ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``;
every process runs the same script, the chief serves the Oracle, the workers
run trials and write to the shared ``directory``.

Meaning of the hyperparameters (each method reads those in its ``uses``):

* ``budget``: target cost as a fraction of the supernet's expected cost in
  ``metric`` when the search starts (``budget_target``);
* ``lam``: strength of the method's cost term;
* ``temperature``: a schedule of ``TEMPERATURES`` ("default" keeps the method's).

Example:
    >>> import searchlayers.tuning as tuning
    >>> space = tuning.search_space(["darts", "figs"], budgets=[0.5, 0.25])  # doctest: +SKIP
    >>> tuner = tuning.SweepTuner("grid", space, directory="sweeps",
    ...                           settings=dict(epochs=2))  # doctest: +SKIP
    >>> tuner.search()  # doctest: +SKIP
"""

import contextlib
import dataclasses
import gc
import json
import os
import time
import warnings

import tensorflow as tf

from searchlayers import callbacks as callbacks_lib
from searchlayers import checks, cost, export, launch, regularizers
from searchlayers import retrain as retrain_lib
from searchlayers._keras import keras

import keras_tuner as kt  # noqa: E402  (imports Keras 3 for itself; tf.keras stays Keras 2)
from keras_tuner.engine import base_tuner  # noqa: E402

RESULT = "result.json"
ARCHITECTURE = "architecture.json"
HYPERPARAMETERS = ("method", "budget", "lam", "temperature")
# Numbers every trial reports to the Oracle (any of them can be the objective).
METRICS = ("accuracy", "float_macs", "binary_macs", "params", "equivalent_ops",
           "size_bytes", "search_seconds")
ORACLES = ("random", "bayesian", "hyperband", "grid")
TEMPERATURES = {
    "default": None,  # the method's own schedule
    "constant": lambda epochs: callbacks_lib.TemperatureScheduler("constant", start=1.0),
    "gdas": lambda epochs: callbacks_lib.TemperatureScheduler.gdas(epochs),
    "snas": lambda epochs: callbacks_lib.TemperatureScheduler(
        "exponential", start=1.0, rate=0.9, floor=0.03),
    "entrannas": lambda epochs: callbacks_lib.TemperatureScheduler.entrannas(),
}


@dataclasses.dataclass
class TrialSpec:
    """One trial's setting: the tuned values plus the sweep's fixed settings.

    Args:
        method: a registered method name.
        budget: target cost / the supernet's initial expected cost.
        lam: strength of the cost term.
        temperature: a key of ``TEMPERATURES``.
        epochs, retrain_epochs: search and retraining epochs.
        steps_per_epoch: shortens the search epochs (None: whole data).
        batch_size, seed: as usual.
        metric: cost metric of the budget (None: the method's).
        options: method-specific settings (e.g. ``{"channels": 4}``).
        log_dir: the trial's folder (``ArchitectureLogger`` writes there).
        strategy: a ``tf.distribute.Strategy`` for the search, or None.
        verbose: ``fit`` verbosity.
        dataset: the ``searchlayers.datasets`` name a child is retrained and
            scored on (``searchlayers.retrain``).
        random_baseline: R > 0 also retrains R random children of the same
            space at the searched child's cost (+-5 %, ``searchlayers.baselines``)
            with the same recipe and seed; the record gets ``random_mean``,
            ``random_std``, ``random_accuracies`` (``random_error`` instead, with
            a warning, when the space has too few children at that cost).

    Example:
        >>> spec = TrialSpec("darts", budget=0.5, temperature="gdas", epochs=4)
        >>> type(spec.temperature_scheduler()).__name__
        'TemperatureScheduler'
    """

    method: str
    budget: float = 1.0
    lam: float = 1.0
    temperature: str = "default"
    epochs: int = 2
    retrain_epochs: int = 2
    steps_per_epoch: int = None
    batch_size: int = 64
    seed: int = 0
    metric: str = None
    options: dict = dataclasses.field(default_factory=dict)
    log_dir: str = None
    strategy: object = None
    verbose: int = 0
    dataset: str = "digits"
    random_baseline: int = 0

    def __post_init__(self):
        if self.temperature not in TEMPERATURES:
            raise ValueError(
                f"TrialSpec: unknown temperature schedule {self.temperature!r}; allowed: "
                f"{', '.join(map(repr, TEMPERATURES))}."
            )
        regularizers.check_positive(self.budget, "budget", "TrialSpec")
        regularizers.check_positive(self.lam, "lam", "TrialSpec")
        checks.string("TrialSpec", "method", self.method)
        for name in ("epochs", "retrain_epochs", "random_baseline"):
            checks.integer("TrialSpec", name, getattr(self, name), low=0)
        checks.positive("TrialSpec", "batch_size", self.batch_size, integer=True)
        checks.positive("TrialSpec", "steps_per_epoch", self.steps_per_epoch, integer=True,
                        none_ok=True)
        checks.integer("TrialSpec", "seed", self.seed)

    def temperature_scheduler(self):
        """The ``TemperatureScheduler`` of ``temperature`` (None for "default").

        Example:
            >>> TrialSpec("darts").temperature_scheduler() is None
            True
        """
        make = TEMPERATURES[self.temperature]
        return None if make is None else make(self.epochs)

    def callbacks(self):
        """Callbacks every method adds to its search: the architecture logger.

        Example:
            >>> [type(c).__name__ for c in TrialSpec("darts", log_dir="t").callbacks()]
            ['ArchitectureLogger']
        """
        if self.log_dir is None:
            return []
        return [callbacks_lib.ArchitectureLogger(self.log_dir, tensorboard=False)]

    def cost_metric(self):
        """``metric``, or the method's default.

        Example:
            >>> TrialSpec("darts", metric="params").cost_metric()
            'params'
        """
        return self.metric or get_method(self.method).metric

    def values(self):
        """The JSON-friendly fields (no strategy).

        Example:
            >>> TrialSpec("darts").values()["budget"]
            1.0
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["strategy"] = None if self.strategy is None else type(self.strategy).__name__
        return out


@dataclasses.dataclass
class Searched:
    """What a method's search returns: the searched supernet, the derived child
    (a plain Keras model carrying ``.architecture``) and the ``fit`` history.

    Example:
        >>> Searched(supernet, sl.derive(supernet), {"loss": [1.0]})  # doctest: +SKIP
    """

    supernet: object
    child: object
    history: dict = dataclasses.field(default_factory=dict)
    # the random baseline's ``[(architecture, child, cost)]`` (or the error that
    # drawing them raised) when it had to be drawn early, in a multi-worker
    # search (see ``search_spec``); None: drawn after the search
    random_children: object = None


@dataclasses.dataclass(frozen=True)
class Method:
    """A sweepable search method.

    Args:
        name: its name (the ``method`` hyperparameter's value).
        search: ``search(spec) -> Searched``: builds, searches, derives.
        retrain: ``retrain(child, spec) -> (model, test_accuracy)``;
            default ``default_retrain``.
        uses: the hyperparameters it reads (of ``HYPERPARAMETERS``).
        metric: default cost metric of its budget.
        lce: export with Larq Compute Engine too (binary networks).

    Example:
        >>> Method("mine", search=lambda spec: None).uses
        ('budget', 'lam')
    """

    name: str
    search: object
    retrain: object = None
    uses: tuple = ("budget", "lam")
    metric: str = "macs"
    lce: bool = False


_METHODS = {}


def register_method(name, search, retrain=None, uses=("budget", "lam"), metric="macs",
                    lce=False):
    """Registers a method for sweeps (see ``Method``); re-registering replaces it.

    Example:
        >>> def my_search(spec):
        ...     ...  # build, search (callbacks=spec.callbacks()), derive
        ...     return Searched(supernet, child, history)
        >>> _ = register_method("mine", my_search)
        >>> "mine" in method_names()
        True
    """
    checks.string("register_method", "name", name)
    for arg, fn in (("search", search), ("retrain", retrain)):
        if not (callable(fn) or (arg == "retrain" and fn is None)):
            raise checks.ArgumentTypeError(
                f"register_method({name!r}): {arg} must be a callable taking a TrialSpec"
                f"{' or None' if arg == 'retrain' else ''}, got {checks.show(fn)} "
                f"({type(fn).__name__}).")
    uses = checks.sequence(f"register_method({name!r})", "uses", uses, nonempty=False,
                           what="a list of hyperparameter names")
    unknown = set(uses) - set(HYPERPARAMETERS[1:])
    if unknown:
        raise ValueError(
            f"register_method({name!r}): unknown hyperparameters {sorted(unknown)} in uses; "
            f"allowed: {', '.join(HYPERPARAMETERS[1:])}."
        )
    regularizers.check_metric(metric, f"register_method({name!r})")
    method = Method(name, search, retrain, tuple(uses), metric, bool(lce))
    _METHODS[name] = method
    return method


def method_names():
    """Names of the registered methods, sorted.

    Example:
        >>> isinstance(method_names(), list)
        True
    """
    return sorted(_METHODS)


def get_method(name):
    """The registered ``Method`` called ``name``.

    Example:
        >>> get_method("mine").name  # doctest: +SKIP
        'mine'
    """
    if name not in _METHODS:
        raise ValueError(
            f"Unknown search method {name!r}; registered: {', '.join(method_names()) or 'none'}."
            " Register one with searchlayers.tuning.register_method (the repository's "
            "examples.methods registers darts, gdas, snas, figs and bnas)."
        )
    return _METHODS[name]


def budget_target(model, spec):
    """The absolute budget of ``spec``: ``spec.budget`` times ``model``'s expected
    cost in ``spec.cost_metric()`` (call it before the search changes the model).

    Example:
        >>> budget_target(supernet, TrialSpec("darts", budget=0.5))  # doctest: +SKIP
        123456.0
    """
    return spec.budget * float(regularizers.expected_cost(model, spec.cost_metric()))


def default_retrain(child, spec):
    """``searchlayers.retrain.retrain``: a fresh-weight copy of ``child`` trained
    ``spec.retrain_epochs`` epochs on ``spec.dataset`` (Adam 3e-3, ``spec.seed``);
    returns ``(model, test_accuracy)``.

    Example:
        >>> model, accuracy = default_retrain(child, TrialSpec("darts"))  # doctest: +SKIP
    """
    return retrain_lib.retrain(child, spec.dataset, spec.retrain_epochs, spec.batch_size,
                               optimizer="adam", lr=3e-3, seed=spec.seed, verbose=spec.verbose)


# -- one trial ------------------------------------------------------------------------
def search_spec(spec):
    """The search of one trial (``method.search`` in ``spec.strategy``'s scope),
    from a clean Keras session and ``spec.seed``; returns its ``Searched``.

    Every worker of a multi-worker strategy runs it for the same trial.

    Example:
        >>> searched = search_spec(TrialSpec("darts", epochs=1))  # doctest: +SKIP
    """
    keras.backend.clear_session()  # trials must not pile up graphs and memory
    gc.collect()
    keras.utils.set_random_seed(spec.seed)
    scope = spec.strategy.scope() if spec.strategy is not None else contextlib.nullcontext()
    with scope:
        searched = get_method(spec.method).search(spec)
    if _multiworker(spec.strategy):  # the chief alone retrains and measures the child
        # Deriving reads the supernet's variables with collectives, so the random
        # children are drawn here, by every worker in step, not by the chief alone.
        drawn = _draw_random(searched, spec) if spec.random_baseline else None
        if isinstance(drawn, list):
            drawn = [(arch, _local_copy(child), c) for arch, child, c in drawn]
        searched = dataclasses.replace(searched, child=_local_copy(searched.child),
                                       random_children=drawn)
    return searched


def _draw_random(searched, spec):
    """``spec.random_baseline`` random children at the searched child's cost, or
    the RuntimeError saying the space has too few of them."""
    from searchlayers import baselines

    metric = spec.cost_metric()
    try:
        return baselines.sample_architectures(
            searched.supernet, searched.child.architecture, int(spec.random_baseline),
            metric, target=baselines.child_cost(searched.child, metric), seed=spec.seed)
    except RuntimeError as error:
        return error


def _local_copy(child):
    """``child`` rebuilt outside any strategy, with its weights, trainable flags
    and ``architecture``: a model of a multi-worker strategy cannot be compiled
    or fit by one worker alone (its new variables are broadcast from the chief,
    its BatchNorm statistics read by an all-reduce), so every worker calls this
    right after the search, in step."""
    weights = child.get_weights()  # collective reads: every worker at once
    copy = keras.models.clone_model(child)  # called outside the strategy's scope
    copy.set_weights(weights)
    if hasattr(child, "architecture"):
        copy.architecture = child.architecture
    return copy


def run_spec(spec):
    """Runs one trial of ``spec`` (see the module docstring); returns its record.

    Writes ``architecture.json`` and the flatbuffers to ``spec.log_dir`` when set.

    Example:
        >>> record = run_spec(TrialSpec("darts", epochs=1, log_dir="t0"))  # doctest: +SKIP
        >>> record["accuracy"], record["equivalent_ops"]  # doctest: +SKIP
    """
    method = get_method(spec.method)
    if spec.log_dir:
        tf.io.gfile.makedirs(spec.log_dir)
    start = time.perf_counter()
    searched = search_spec(spec)
    search_seconds = time.perf_counter() - start
    architecture = searched.child.architecture
    start = time.perf_counter()
    model, accuracy = (method.retrain or default_retrain)(searched.child, spec)
    retrain_seconds = time.perf_counter() - start
    profile = cost.profile(model)
    baseline = _random_baseline(searched, spec, method)
    sizes = _export_sizes(model, spec.log_dir, method.lce)
    if spec.log_dir:
        _write(os.path.join(spec.log_dir, ARCHITECTURE), architecture.to_json())
    total = profile.to_dict()["total"]
    return {
        "method": spec.method, "budget": spec.budget, "lam": spec.lam,
        "temperature": spec.temperature, "uses": list(method.uses),
        "metric": spec.cost_metric(),
        "accuracy": accuracy,
        **{k: total[k] for k in ("float_macs", "binary_macs", "params", "equivalent_ops",
                                 "memory_bytes")},
        **sizes,
        "search_seconds": search_seconds, "retrain_seconds": retrain_seconds,
        "replicas": 1 if spec.strategy is None else spec.strategy.num_replicas_in_sync,
        "supernet_expected": cost.profile(searched.supernet).to_dict()["total"],
        "architecture": architecture.names,
        "history": {k: [float(v) for v in vs] for k, vs in (searched.history or {}).items()},
        **baseline,
        "spec": spec.values(),
    }


def _random_baseline(searched, spec, method):
    """``random_mean`` / ``random_std`` / ``random_accuracies`` of
    ``spec.random_baseline`` random children at the searched child's cost, and
    the searched supernet's decision summary (``decided``, ``median_max_prob``,
    ``decided_share``)."""
    from searchlayers import baselines, decision

    out = {}
    if _arch_groups(searched.supernet):
        s = decision.summary(searched.supernet)
        out.update(decided=s["decided"], undecided=s["undecided"],
                   median_max_prob=s["median_max_prob"], decided_share=s["decided_share"])
    if not spec.random_baseline:
        return out
    retrain = method.retrain or default_retrain

    def train(child, seed):
        return retrain(child, dataclasses.replace(spec, seed=seed))[1]

    try:
        if isinstance(searched.random_children, RuntimeError):
            raise searched.random_children
        result = baselines.random_baseline(searched.supernet, searched.child, train,
                                           n=int(spec.random_baseline), seeds=(spec.seed,),
                                           metric=spec.cost_metric(), seed=spec.seed,
                                           found=searched.random_children)
    except RuntimeError as error:  # too few children at that cost: the trial still counts
        warnings.warn(f"tuning: trial of {spec.method} budget {spec.budget:g}: no random "
                      f"baseline: {error}", stacklevel=2)
        return {**out, "random_error": str(error)}
    out.update(random_mean=result["mean"], random_std=result["std"],
               random_accuracies=[a[0] for a in result["accuracies"]],
               random_costs=result["costs"])
    return out


def _arch_groups(model):
    """The architecture groups of ``model`` (none for a single-path supernet)."""
    return regularizers.arch_groups(regularizers.unwrap(model))


def _export_sizes(model, folder, lce):
    """TFLite size, and LCE size for binary methods (then ``size_bytes`` is LCE's)."""
    with export.quiet_converter():
        path = os.path.join(folder, "model.tflite") if folder else None
        sizes = {"tflite_bytes": len(export.to_tflite(model, path)), "lce_bytes": None}
        if lce:
            path = os.path.join(folder, "model.lce.tflite") if folder else None
            sizes["lce_bytes"] = len(export.to_lce(model, path))
    sizes["size_format"] = "LCE" if lce else "TFLite"
    sizes["size_bytes"] = sizes["lce_bytes"] if lce else sizes["tflite_bytes"]
    return sizes


def _write(path, text):
    with tf.io.gfile.GFile(path, "w") as f:  # local paths, gs:// and friends
        f.write(text)


# -- the search space and the Oracles -------------------------------------------------
def search_space(methods, budgets=(1.0,), lams=(1.0,), temperatures=("default",)):
    """``keras_tuner.HyperParameters`` over methods and their settings.

    A hyperparameter that only some methods use is conditional on them, so a
    grid does not repeat a method for values it ignores.

    Example:
        >>> hp = search_space(["darts", "figs"], budgets=[0.5, 0.25])  # doctest: +SKIP
        >>> [p.name for p in hp.space]  # doctest: +SKIP
        ['method', 'budget', 'lam', 'temperature']
    """
    methods = checks.sequence("search_space", "methods", methods, what="a list of method names")
    for name in methods:
        get_method(name)
    hp = kt.HyperParameters()
    hp.Choice("method", methods)
    for name, values in (("budget", budgets), ("lam", lams), ("temperature", temperatures)):
        users = [m for m in methods if name in get_method(m).uses]
        if not users:
            continue
        if name == "temperature":
            values = checks.sequence("search_space", "temperatures", values)
        else:
            values = checks.numbers("search_space", f"{name}s", values, low=0, low_open=True)
        if len(users) == len(methods):
            hp.Choice(name, values)
        else:
            with hp.conditional_scope("method", users):
                hp.Choice(name, values)
    return hp


def make_oracle(name, hyperparameters, objective="accuracy", max_trials=None, seed=0,
                **kwargs):
    """A keras-tuner Oracle by name (``ORACLES``) over ``hyperparameters``.

    ``objective`` is one of ``METRICS`` (maximized for accuracy, minimized
    otherwise) or a ``keras_tuner.Objective``. ``kwargs`` go to the Oracle
    (e.g. Hyperband's ``max_epochs`` and ``factor``).

    Example:
        >>> make_oracle("grid", kt.HyperParameters()).objective.name
        'accuracy'
    """
    if isinstance(objective, str):
        if objective not in METRICS:
            raise ValueError(
                f"make_oracle: unknown objective {objective!r}; allowed: {', '.join(METRICS)} "
                "or a keras_tuner.Objective."
            )
        objective = kt.Objective(objective, "max" if objective == "accuracy" else "min")
    common = dict(objective=objective, hyperparameters=hyperparameters, seed=seed, **kwargs)
    if name == "random":
        return kt.oracles.RandomSearchOracle(max_trials=max_trials or 10, **common)
    if name == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=max_trials or 10, **common)
    if name == "grid":
        return ResumableGridOracle(max_trials=max_trials, **common)
    if name == "hyperband":
        if max_trials is not None:
            raise ValueError("make_oracle('hyperband'): Hyperband sets its own number of "
                             "trials; give max_epochs (and factor) instead of max_trials.")
        return kt.oracles.HyperbandOracle(**common)
    raise ValueError(f"make_oracle: unknown oracle {name!r}; allowed: {', '.join(ORACLES)}.")


class ResumableGridOracle(kt.oracles.GridSearchOracle):
    """keras-tuner's grid Oracle whose grid bookkeeping survives a reload.

    keras-tuner 1.4.8 keeps the grid order (``_ordered_ids``) and the queue of
    trials to expand (``_populate_next``) only in memory, so a resumed grid
    search fails with a KeyError (keras-team/keras-tuner#1055); this saves
    both with the Oracle's state.

    Example:
        >>> ResumableGridOracle(objective="accuracy").get_state()["grid_order"]
        []
    """

    def get_state(self):
        state = super().get_state()
        order, index = [], self._ordered_ids._next_index[None]
        while index is not None:
            order.append(self._ordered_ids._memory[index])
            index = self._ordered_ids._next_index[index]
        state.update(grid_order=order, grid_populate_next=list(self._populate_next))
        return state

    def set_state(self, state):
        super().set_state(state)
        self._ordered_ids = type(self._ordered_ids)()
        for trial_id in state.get("grid_order", []):
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(state.get("grid_populate_next", []))


# -- the tuner ------------------------------------------------------------------------
_HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round",
                   "tuner/trial_id")
_SETTINGS = {f.name for f in dataclasses.fields(TrialSpec)} - {"log_dir", "strategy"}


def is_chief():
    """True in the chief process of distributed tuning (keras-tuner's rule: the
    ``KERASTUNER_TUNER_ID`` contains "chief").

    Example:
        >>> is_chief()  # with no KERASTUNER_* variables set
        False
    """
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" in os.environ.get(
        "KERASTUNER_TUNER_ID", "")


def is_worker():
    """True in a worker process of distributed tuning.

    Example:
        >>> is_worker()  # with no KERASTUNER_* variables set
        False
    """
    return "KERASTUNER_ORACLE_IP" in os.environ and not is_chief()


def method_options(options, method):
    """The options of ``method``: the shared ones, updated by ``options[method]``
    when that is a dict (options of other methods' names are left out).

    Example:
        >>> _ = register_method("mine", search=lambda spec: None)
        >>> method_options({"cells": 3, "mine": {"channels": 8}}, "mine")
        {'cells': 3, 'channels': 8}
    """
    shared = {k: v for k, v in options.items()
              if not (k in _METHODS and isinstance(v, dict))}
    own = options.get(method)
    return {**shared, **(own if isinstance(own, dict) else {})}


class SweepTuner(base_tuner.BaseTuner):
    """Runs one search-derive-retrain-measure trial per hyperparameter setting.

    Args:
        oracle: a name of ``ORACLES`` or a keras-tuner ``Oracle``.
        hyperparameters: a ``keras_tuner.HyperParameters`` with ``method`` and
            any of ``budget``, ``lam``, ``temperature`` (``search_space``);
            used when ``oracle`` is a name.
        max_trials, objective, seed, oracle_kwargs: for ``make_oracle``.
        directory, project_name: the sweep folder is ``directory/project_name``.
        overwrite: start afresh (True) or resume (False). Workers never overwrite.
        settings: fixed ``TrialSpec`` fields for every trial (``epochs``,
            ``options``, ... and defaults of untuned hyperparameters); in
            ``options`` a method's name keys its own options
            (``method_options``).
        strategy: ``tf.distribute.Strategy`` (or "mirrored") for the searches.
        random_baseline: R > 0 retrains R random children at each trial's
            searched cost (``TrialSpec.random_baseline``).

    Hyperband's ``tuner/epochs`` sets the search epochs of its trials (each
    trial searches from scratch).

    Example:
        >>> tuner = SweepTuner("grid", search_space(["darts"], budgets=[1.0, 0.5]),
        ...                    directory="sweeps", settings=dict(epochs=2))  # doctest: +SKIP
        >>> tuner.search()  # doctest: +SKIP
        >>> [r["accuracy"] for r in tuner.results()]  # doctest: +SKIP
    """

    def __init__(self, oracle="random", hyperparameters=None, max_trials=None,
                 objective="accuracy", directory="sweeps", project_name="sweep",
                 overwrite=False, settings=None, strategy=None, seed=0, oracle_kwargs=None,
                 random_baseline=0):
        settings = dict(settings or {})
        if checks.integer("SweepTuner", "random_baseline", random_baseline, low=0):
            settings["random_baseline"] = int(random_baseline)
        unknown = set(settings) - _SETTINGS
        if unknown:
            raise ValueError(f"SweepTuner: unknown settings {sorted(unknown)}; allowed: "
                             f"{', '.join(sorted(_SETTINGS))}.")
        for hp in getattr(hyperparameters, "space", []):  # before the first trial
            if hp.name in ("budget", "lam"):
                checks.numbers("SweepTuner", f"hyperparameter {hp.name!r} values",
                               getattr(hp, "values", [hp.default]), low=0, low_open=True)
        if isinstance(oracle, str):
            if hyperparameters is None:
                raise ValueError("SweepTuner: give `hyperparameters` (see search_space) "
                                 "with an oracle name.")
            oracle = make_oracle(oracle, hyperparameters, objective, max_trials, seed,
                                 **(oracle_kwargs or {}))
        self.settings = settings
        if strategy == "mirrored":
            strategy = tf.distribute.MirroredStrategy()
        elif strategy == "multiworker":  # the cluster of TF_CONFIG (searchlayers.launch)
            strategy = launch.strategy_from_env()
        self.strategy = strategy
        super().__init__(oracle, directory=directory, project_name=project_name,
                         overwrite=overwrite and not is_worker())

    def trial_spec(self, trial):
        """The ``TrialSpec`` of a keras-tuner trial.

        Example:
            >>> tuner.trial_spec(trial).method  # doctest: +SKIP
            'darts'
        """
        values = dict(trial.hyperparameters.values)
        fields = dict(self.settings)
        if "tuner/epochs" in values:
            fields["epochs"] = int(values["tuner/epochs"])
        fields.update({k: v for k, v in values.items()
                       if k in HYPERPARAMETERS and trial.hyperparameters.is_active(k)})
        extra = {k: v for k, v in values.items()
                 if k not in HYPERPARAMETERS and k not in _HYPERBAND_KEYS}
        if "method" not in fields:
            raise ValueError("SweepTuner: no `method` hyperparameter and no method setting.")
        fields["options"] = {**method_options(fields.get("options", {}), fields["method"]),
                             **extra}
        return TrialSpec(**fields, log_dir=self.get_trial_dir(trial.trial_id),
                         strategy=self.strategy)

    def run_trial(self, trial):
        """Runs ``run_spec`` for the trial, writes ``result.json``; returns ``METRICS``.

        Example:
            >>> tuner.run_trial(trial)["accuracy"]  # doctest: +SKIP
            0.93
        """
        if _multiworker(self.strategy):  # the other workers run the same trial
            _broadcast(self.strategy, {"trial_id": trial.trial_id,
                                       "values": trial.hyperparameters.values})
        spec = self.trial_spec(trial)
        record = {"trial_id": trial.trial_id, "tuner_id": self.tuner_id,
                  "hyperparameters": trial.hyperparameters.values, **run_spec(spec)}
        _write(os.path.join(spec.log_dir, RESULT), json.dumps(record, indent=2, default=str))
        return {name: float(record[name]) for name in METRICS}

    def search(self, verbose=1):
        """Runs trials until the Oracle stops (the chief serves the Oracle instead).

        Example:
            >>> tuner.search()  # doctest: +SKIP
        """
        if not is_worker():
            self.oracle.verbose = verbose
        if is_chief():
            self.save()
            serve_oracle(self.oracle)
            return
        if _multiworker(self.strategy) and not launch.is_chief(self.strategy):
            self._follow()
            return
        super().search()
        if _multiworker(self.strategy):
            _broadcast(self.strategy, None)  # the other workers stop

    def _follow(self):
        """A non-chief worker of a multi-worker strategy: searches each trial its
        chief broadcasts (the chief alone talks to the Oracle and writes)."""
        while True:
            message = _broadcast(self.strategy)
            if message is None:
                return
            hp = self.oracle.get_space()
            hp.values = dict(message["values"])
            trial = kt.engine.trial.Trial(hp, trial_id=message["trial_id"])
            search_spec(self.trial_spec(trial))

    def results(self):
        """The records of the finished trials (``load_results`` of the sweep folder).

        Example:
            >>> len(tuner.results())  # doctest: +SKIP
            4
        """
        return load_results(self.project_dir)


def _multiworker(strategy):
    """True for a strategy over several worker processes."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.cluster_resolver.cluster_spec().as_dict())


def _broadcast(strategy, message=..., size=1 << 16):
    """The chief's JSON ``message`` on every worker, by one all-reduce of its
    bytes (the other workers add zeros); the others call it without a message."""
    import numpy as np

    data = np.zeros(size, np.int32)
    if message is not ...:
        raw = json.dumps(message).encode()
        if len(raw) > size:
            raise ValueError(f"SweepTuner: a trial's hyperparameters take {len(raw)} bytes "
                             f"as JSON; at most {size} go to the other workers.")
        data[:len(raw)] = np.frombuffer(raw, np.uint8)
    total = strategy.reduce("SUM", strategy.run(lambda: tf.constant(data)), axis=None)
    raw = bytes(np.asarray(total.numpy(), np.uint8)).rstrip(b"\0")
    return json.loads(raw.decode())


def serve_oracle(oracle, poll_seconds=1.0):
    """Serves ``oracle`` to the workers until every trial is done (the chief).

    keras-tuner's own loop polls every 20 s once a worker has been told to
    stop; this one polls every ``poll_seconds``.

    Example:
        >>> serve_oracle(tuner.oracle)  # doctest: +SKIP
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server.add_insecure_port(address)
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=None)


def load_results(project_dir):
    """The ``result.json`` records under ``project_dir/trial_*``, by trial id.

    Example:
        >>> [r["method"] for r in load_results("sweeps/sweep")]  # doctest: +SKIP
        ['darts', 'darts', 'figs', 'figs']
    """
    records = []
    for path in sorted(tf.io.gfile.glob(os.path.join(project_dir, "trial_*", RESULT))):
        with tf.io.gfile.GFile(path) as f:
            record = json.load(f)
        record["trial_dir"] = os.path.dirname(path)
        records.append(record)
    return sorted(records, key=lambda r: r["trial_id"])
