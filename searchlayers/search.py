"""Training a supernet: the architecture / weight split and ``SearchModel``.

Two ways to train:

- Jointly with plain ``compile`` + ``fit``: give ``compile`` the optimizer from
  ``joint_optimizer`` (larq's ``CaseOptimizer`` routing ``arch_*`` variables
  to their own optimizer). Additive regularizers work through ``add_loss``.
- ``SearchModel(model, bilevel=True)``: first-order DARTS — each step updates
  the architecture on a validation batch, then the weights on a training
  batch (``fit`` on ``searchlayers.datasets.search_pairs``). It also offers
  multiplicative loss terms (BARS eq. 7) and architecture warm-up.
"""

import contextlib

import numpy as np
import tensorflow as tf

from searchlayers import checks, progress
from searchlayers._keras import PlainCall, keras, register, require_built
from searchlayers.layers.base import is_arch_variable, search_layers, untied_layers
from searchlayers.layers.figs_draw import draw_jointly
from searchlayers.layers.figs_fold import check_folds

ARCH_LR, ARCH_BETAS, ARCH_WEIGHT_DECAY = 3e-4, (0.5, 0.999), 1e-3


def tie_arch_variables(model):
    """Makes search layers with the same ``arch_key`` share one set of variables,
    and the model's FiGS masks one draw per call (``layers.figs_draw``).

    Idempotent; returns ``{key: [layers]}``. Every entry point of the package
    calls it; a model built by hand needs it before a plain ``compile`` + ``fit``
    (``joint_optimizer`` refuses untied layers) or a custom training loop.

    Example:
        >>> import searchlayers as sl
        >>> x = sl.keras.Input((4, 4, 2))
        >>> y = sl.MixedOp(["skip_connect", "none"], arch_key="k")(x)
        >>> y = sl.MixedOp(["skip_connect", "none"], arch_key="k")(y)
        >>> groups = tie_arch_variables(sl.keras.Model(x, y))
        >>> [len(v) for v in groups.values()]
        [2]
    """
    if not isinstance(model, keras.Model):
        raise checks.ArgumentTypeError(
            f"tie_arch_variables: model must be a keras.Model, got {checks.show(model)} "
            f"({type(model).__name__}).")
    groups = {}
    for layer in search_layers(model):
        if layer.arch_key is None or not layer.built:
            continue
        group = groups.setdefault(layer.arch_key, [])
        if group:
            layer.share_arch_from(group[0])
        group.append(layer)
    check_folds(model)  # a folded mask's output is its consumer's alone
    draw_jointly(model)  # one draw of every FiGS mask per call
    return groups


def _dedup(variables):
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def arch_variables(model):
    """The architecture variables of ``model`` (shared ones once).

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((4, 4, 2)), sl.MixedOp(["skip_connect", "none"])])
        >>> [v.name.split("/")[-1] for v in arch_variables(m)]
        ['arch_logits:0']
    """
    _check_built(model)
    tie_arch_variables(model)
    return _dedup(v for v in model.trainable_variables if is_arch_variable(v))


def weight_variables(model):
    """The trainable network weights of ``model`` (everything but ``arch_*``).

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((3,)), sl.keras.layers.Dense(2)])
        >>> len(weight_variables(m))
        2
    """
    _check_built(model)
    tie_arch_variables(model)
    return _dedup(v for v in model.trainable_variables if not is_arch_variable(v))


def _check_built(model):
    require_built(model, "its variables do not exist yet")


def nonfinite_arch_variables(model):
    """Names of the architecture variables of ``model`` holding NaN or inf.

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((4, 4, 2)), sl.MixedOp(["skip_connect", "none"])])
        >>> nonfinite_arch_variables(m)
        []
    """
    return [v.name for v in arch_variables(model) if not np.isfinite(v.numpy()).all()]


def check_finite_arch(model, where):
    """FloatingPointError naming the non-finite architecture variables, if any
    (``derive`` / ``choose`` never pick from NaN: argmax of NaN is index 0)."""
    bad = nonfinite_arch_variables(model)
    if bad:
        raise FloatingPointError(
            f"{where}: model '{model.name}' has non-finite architecture variables {bad}; "
            "the search diverged (NaN/inf in the data, a loss or a regularizer "
            "strength). Nothing can be derived from them."
        )


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops a search whose loss or architecture variables become NaN / inf.

    ``SearchModel.fit`` adds one. ``on_nonfinite="raise"`` (default) raises
    FloatingPointError naming the variable and the step; ``"stop"`` warns and
    ends training (``keras.callbacks.TerminateOnNaN`` semantics).
    """

    def __init__(self, on_nonfinite="raise"):
        super().__init__()
        self.on_nonfinite = checks.choice("NonFiniteGuard", "on_nonfinite", on_nonfinite,
                                          ("raise", "stop"))
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_begin(self, logs=None):
        net = getattr(self.model, "model", self.model)
        variables = arch_variables(net)  # walks every layer: once per fit, not per step
        # one compiled check of every variable per step (eager per-variable reads
        # cost as much as a small supernet's step)
        self._finite = tf.function(
            lambda: tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables]),
            autograph=False) if variables else (lambda: True)
        self._net = net

    def on_train_batch_end(self, batch, logs=None):
        if getattr(self, "_finite", None) is None:  # called outside fit
            self.on_train_begin()
        loss = (logs or {}).get("loss")
        loss = None if loss is None else float(loss)
        if bool(self._finite()) and (loss is None or np.isfinite(loss)):
            return
        bad = nonfinite_arch_variables(self._net)
        message = (
            f"SearchModel: the search became non-finite at epoch {self._epoch + 1}, step "
            f"{batch + 1}: loss={loss}, non-finite architecture variables {bad or 'none'}. "
            "Check the data for NaN/inf (np.isfinite(x).all()), the regularizer "
            "strengths and the learning rates."
        )
        if self.on_nonfinite == "raise":
            raise FloatingPointError(message)
        import warnings

        warnings.warn(message + " Training stopped.", stacklevel=2)
        self.model.stop_training = True


_PAIRS_HINT = (
    "SearchModel(bilevel=True).fit needs elements ((x_train, y_train), (x_val, y_val)), "
    "e.g. from searchlayers.datasets.search_pairs(...); for plain (x, y) data use "
    "SearchModel(net, bilevel=False)"
)


def _is_pair(spec):
    return isinstance(spec, tuple) and len(spec) == 2


def check_labelled(data, where, model=None):
    """Scoring needs labels: ``data`` must be an ``(x, y)`` pair or a dataset of
    ``(x, y)`` batches, with as many tensors in ``x`` as ``model`` has inputs."""
    spec = data.element_spec if isinstance(data, tf.data.Dataset) else None
    labelled = (isinstance(spec, tuple) and len(spec) >= 2) if spec is not None else (
        isinstance(data, (tuple, list)) and len(data) >= 2)
    if not labelled:
        checks.fail(where, "validation_data", data, "labelled data: an (x, y) pair of arrays "
                    "or a tf.data.Dataset of (x, y) batches")
    if spec is None:  # rows of arrays (a list or dict of them: several inputs / outputs)
        sizes = [part.shape[0] if getattr(part, "shape", None) else None for part in data[:2]]
        if None not in sizes and (sizes[0] != sizes[1] or not sizes[0]):
            checks.fail(where, "validation_data", f"x of {sizes[0]} and y of {sizes[1]} rows",
                        "an (x, y) pair with the same number (>= 1) of rows")
    net = model.model if isinstance(model, SearchModel) else model
    wanted = len(getattr(net, "inputs", None) or [])
    x = spec[0] if spec is not None else data[0]
    got = len(tf.nest.flatten(x))
    if wanted and got != wanted and not isinstance(x, dict):  # Keras reads a dict by name
        checks.fail(where, "validation_data", f"batches whose x holds {got} tensors",
                    f"(x, y) batches whose x holds the model's {wanted} input(s) (a "
                    "search's ((x, y), (x, y)) pairs are training data, not validation data)")


def _check_joint_data(args, kwargs):
    """One-line error before tracing when joint ``fit`` gets bilevel pairs."""
    x = args[0] if args else kwargs.get("x")
    spec = x.element_spec if isinstance(x, tf.data.Dataset) else None
    if _is_pair(spec) and _is_pair(spec[0]) and _is_pair(spec[1]):
        raise ValueError(
            "SearchModel(bilevel=False).fit needs (x, y) elements (one loss updates both "
            "variable sets); got a dataset of ((x_train, y_train), (x_val, y_val)) pairs: "
            "use SearchModel(net, bilevel=True) for them.")


def _check_bilevel_data(args, kwargs):
    """One-line error before tracing when bilevel ``fit`` gets anything but pairs."""
    x = args[0] if args else kwargs.get("x")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        if not (_is_pair(spec) and _is_pair(spec[0]) and _is_pair(spec[1])):
            raise ValueError(f"{_PAIRS_HINT}; got a dataset of {spec}.")
    elif y is not None or isinstance(x, (np.ndarray, tf.Tensor)):
        got = type(x).__name__ + ("" if y is None else f" x and {type(y).__name__} y")
        raise ValueError(f"{_PAIRS_HINT}; got {got}.")


def _build_optimizer(optimizer, variables):
    """Creates ``optimizer``'s slots for ``variables`` now, outside any trace."""
    if hasattr(optimizer, "pred_opt_pairs"):  # larq's CaseOptimizer: each part, its variables
        parts = [[] for _ in optimizer.optimizers]
        for var in variables:
            index = next((i for i, (claims, _) in enumerate(optimizer.pred_opt_pairs)
                          if claims(var)), getattr(optimizer, "DEFAULT_OPT_INDEX", None))
            if index is not None:
                parts[index].append(var)
        _ = optimizer.iterations
        for part, part_variables in zip(optimizer.optimizers, parts):
            _build_optimizer(part, part_variables)
    elif isinstance(optimizer, keras.optimizers.Optimizer) and hasattr(optimizer, "build"):
        optimizer.build(variables)
    elif hasattr(optimizer, "_create_all_weights"):  # a legacy optimizer
        optimizer._create_all_weights(variables)


def _example_target(x, y):
    """One zero target of the shape and dtype of ``fit``'s labels, or None."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        if _is_pair(spec) and _is_pair(spec[0]) and _is_pair(spec[1]):
            spec = spec[0]  # bi-level pairs
        y = spec[1] if isinstance(spec, tuple) and len(spec) > 1 else None
        if not isinstance(y, tf.TensorSpec) or y.shape.rank is None:
            return None
        return tf.zeros([1] + [d or 1 for d in y.shape[1:]], y.dtype)
    if y is None or not hasattr(y, "shape") or not len(y):
        return None
    return tf.convert_to_tensor(np.asarray(y[:1]))


def prebuild(model, x=None, y=None, optimizers=None):
    """Creates the optimizer slots and compiled metrics of ``model`` before ``fit``.

    ``tf.function`` traces a function that creates variables twice (once
    creating them, once more without), so a train step that builds its
    optimizer slots or metrics inside its first trace pays the whole graph
    build twice: about half of a supernet's time to the first step.
    ``SearchModel.fit`` calls it; call it before a plain ``model.fit(x, y)``
    (``x``: the data given to ``fit``, to learn the labels' shape).

    Args:
        model: a compiled Keras model.
        x, y: ``fit``'s data (a dataset of ``(x, y)`` or bi-level pairs, or arrays).
        optimizers: ``(optimizer, variables)`` pairs; default the model's
            optimizer over its trainable variables.

    Example:
        >>> net = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                         keras.layers.Dense(10)])
        >>> net.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> prebuild(net, x, y)
        >>> net.compiled_metrics.built, len(net.optimizer.variables) > 1
        (True, True)
    """
    if optimizers is None:
        optimizers = [(model.optimizer, model.trainable_variables)]
    with model.distribute_strategy.scope():
        for optimizer, variables in optimizers:
            _build_optimizer(optimizer, variables)
        target = _example_target(x, y)
        inner = getattr(model, "model", model)  # a SearchModel's supernet
        outputs = getattr(inner, "outputs", None)
        metrics = getattr(model, "compiled_metrics", None)
        if target is None or not outputs or metrics is None or metrics.built:
            return
        preds = [tf.zeros([1] + [d or 1 for d in o.shape[1:]], o.dtype) for o in outputs]
        metrics.build(preds[0] if len(preds) == 1 else preds, target)


def default_arch_optimizer(legacy=False):
    """Adam(3e-4, betas (0.5, 0.999)) — the DARTS/BARS architecture optimizer.

    Weight decay 1e-3 is applied by ``SearchModel`` as an L2 gradient term (the
    authors' PyTorch ``Adam(weight_decay=...)``). ``legacy=True`` gives the
    legacy optimizer larq's ``CaseOptimizer`` requires (no weight decay).

    Example:
        >>> default_arch_optimizer().learning_rate.numpy().round(6)
        0.0003
    """
    opt = keras.optimizers.legacy.Adam if legacy else keras.optimizers.Adam
    return opt(learning_rate=ARCH_LR, beta_1=ARCH_BETAS[0], beta_2=ARCH_BETAS[1])


def joint_optimizer(weights_optimizer=None, arch_optimizer=None):
    """larq ``CaseOptimizer``: ``arch_*`` variables to ``arch_optimizer``,
    everything else to ``weights_optimizer``; for plain ``compile`` + ``fit``.

    Both must be ``keras.optimizers.legacy`` optimizers (larq's requirement).

    Example:
        >>> opt = joint_optimizer(keras.optimizers.legacy.SGD(0.1))
        >>> type(opt).__name__
        'CaseOptimizer'
    """
    weights_optimizer = weights_optimizer or keras.optimizers.legacy.Adam()
    arch_optimizer = arch_optimizer or default_arch_optimizer(legacy=True)
    return _joint_class()(
        (is_arch_variable, arch_optimizer), default_optimizer=weights_optimizer
    )


_JOINT = []


def _joint_class():
    """larq's ``CaseOptimizer`` that also trains a model with no architecture
    variables (a single-path SPOS supernet): the weights optimizer alone, with a
    warning, instead of larq's "Optimizer ... did not claim any variables" raised
    from inside the traced ``fit``."""
    if _JOINT:
        return _JOINT[0]
    import warnings

    import larq as lq

    class CaseOptimizer(lq.optimizers.CaseOptimizer):
        def _compute_var_opt_mapping(self, grads_and_vars):
            untied = untied_layers([var for _, var in grads_and_vars])
            if untied:  # plain compile + fit: no entry point of ours ran tie_arch_variables
                key, layers = next(iter(untied.items()))
                raise ValueError(
                    f"joint_optimizer: search layers {layers} share arch_key={key!r} but "
                    "train architecture variables of their own, so they would learn apart; "
                    "call searchlayers.tie_arch_variables(model) before fit.")
            if any(is_arch_variable(var) for _, var in grads_and_vars):
                return super()._compute_var_opt_mapping(grads_and_vars)
            warnings.warn(
                "joint_optimizer: the model has no trainable architecture variables "
                "(arch_*), so only the weights optimizer runs (fine for a single-path "
                "supernet; compile with the weights optimizer alone to silence this).",
                stacklevel=2,
            )
            self.var_opt_mapping = {lq.optimizers._var_key(var): self.DEFAULT_OPT_INDEX
                                    for _, var in grads_and_vars}

    _JOINT.append(CaseOptimizer)
    return CaseOptimizer


@contextlib.contextmanager
def _tape(variables):
    """A tape recording only what depends on ``variables``: each bi-level half
    differentiates one variable set, and a tape watching every variable also
    traces the other set's gradient, unused (1,900 of the 15,000 ops of the demo
    DARTS step, each traced and optimized before the first step)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(variables)
        yield tape


@register
class SearchModel(PlainCall, keras.Model):
    """Wraps a supernet for first-order bi-level (DARTS) or joint search.

    ``fit`` data: with ``bilevel=True`` each element is
    ``((x_train, y_train), (x_val, y_val))`` (see
    ``searchlayers.datasets.search_pairs``); with ``bilevel=False`` it is
    ``(x, y)`` and one loss updates both variable sets, each with its own
    optimizer. ``evaluate`` / ``predict`` take ordinary data.

    Loss: ``L0 * prod(multipliers) + sum(model.losses)``, where multipliers are
    zero-argument callables added with ``add_loss_multiplier`` (BARS' FLOPs
    objective) and ``model.losses`` holds additive regularizers.

    Args:
        model: the supernet (any built Keras model with search layers).
        arch_optimizer: default ``default_arch_optimizer()``.
        bilevel: first-order DARTS alternation (True) or joint training.
        arch_weight_decay: L2 on the architecture variables (default 1e-3).

    Example:
        >>> import searchlayers as sl
        >>> supernet = sl.keras.Sequential([
        ...     sl.keras.Input((8, 8, 1)),
        ...     sl.keras.layers.Conv2D(4, 3, padding="same"),
        ...     sl.MixedOp(["conv_3x3", "skip_connect", "none"]),
        ...     sl.keras.layers.GlobalAveragePooling2D(),
        ...     sl.keras.layers.Dense(10),
        ... ])
        >>> search = SearchModel(supernet, bilevel=True)
        >>> search.compile("sgd", sl.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> pairs = sl.datasets.search_pairs("digits", batch_size=64).take(2)
        >>> history = search.fit(pairs, epochs=1, verbose=0)
    """

    def __init__(self, model, arch_optimizer=None, bilevel=True,
                 arch_weight_decay=ARCH_WEIGHT_DECAY, **kwargs):
        super().__init__(**kwargs)
        _check_built(model)
        if not arch_variables(model):
            raise ValueError(
                f"SearchModel: model '{model.name}' has no architecture variables (no "
                "search layer with arch_* logits: MixedOp, FiGSMask, gates, EnTranCell); "
                "allowed: a supernet with at least one. Train a single-path or fixed "
                "model with its own fit."
            )
        self.model = model
        self.bilevel = checks.boolean("SearchModel", "bilevel", bilevel)
        self.arch_weight_decay = checks.number("SearchModel", "arch_weight_decay",
                                               arch_weight_decay, low=0)
        self.arch_optimizer = arch_optimizer or default_arch_optimizer()
        self.arch_enabled = tf.Variable(True, trainable=False, name="arch_enabled")
        self._multipliers = []
        # Our own "loss" tracker: Keras' compiled-loss tracker would report the
        # data loss before multipliers.
        self._loss_tracker = keras.metrics.Mean(name="loss")
        tie_arch_variables(model)
        # Built with its model: BackupAndRestore restores the optimizers only of a
        # built model (and warns about an unbuilt one).
        self.built = True

    @property
    def metrics(self):
        compiled = self.compiled_metrics.metrics if self.compiled_metrics else []
        return [self._loss_tracker, *compiled]

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit`` plus a ``searchlayers.decision.DecisionTracker``
        (unless one is given): it prints how decided the search ended and warns
        when it ended undecided; a ``NonFiniteGuard``; and, unless
        ``verbose=0``, a ``searchlayers.progress.FirstStep`` that says the
        search graph is being built before the first step."""
        from searchlayers.decision import DecisionTracker  # decision imports this module

        if self.bilevel:
            _check_bilevel_data(args, kwargs)
        else:
            _check_joint_data(args, kwargs)
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tf.data.Dataset, tuple, list)):  # not a Sequence: Keras' own
            check_labelled(validation, "SearchModel.fit", self)
        self._prebuild(args, kwargs)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, DecisionTracker) for c in callbacks):
            callbacks.append(DecisionTracker())
        if not any(isinstance(c, NonFiniteGuard) for c in callbacks):
            callbacks.append(NonFiniteGuard())
        if kwargs.get("verbose", "auto") != 0 and not any(
                isinstance(c, progress.FirstStep) for c in callbacks):
            callbacks.append(progress.FirstStep())  # the silent wait before the first step
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def _prebuild(self, args, kwargs):
        x = args[0] if args else kwargs.get("x")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        prebuild(self, x, y, optimizers=[(self.optimizer, weight_variables(self.model)),
                                         (self.arch_optimizer, arch_variables(self.model))])

    def add_loss_multiplier(self, fn):
        """Multiplies the data loss by ``fn()`` in every step (e.g. BARS eq. 7)."""
        self._multipliers.append(fn)

    def _replicas(self):
        return self.distribute_strategy.num_replicas_in_sync

    def _distributed(self):
        """Made under a ``tf.distribute`` strategy, even of one replica (a
        1-worker ``MultiWorkerMirroredStrategy``): its optimizer updates merge
        across replicas, which ``tf.cond`` cannot hold."""
        return self._distribution_strategy is not None

    def set_arch_enabled(self, enabled):
        """Turns the architecture updates on or off (``ArchWarmup`` calls it).

        Under a strategy the train function reads ``arch_enabled`` when
        it is traced (a cross-replica optimizer update cannot sit inside
        ``tf.cond``), so a change of value retraces it.

        Example:
            >>> search.set_arch_enabled(False)  # doctest: +SKIP
        """
        enabled = bool(enabled)
        changed = bool(self.arch_enabled.numpy()) != enabled
        self.arch_enabled.assign(enabled)
        if changed and self.train_function is not None and self._distributed():
            self.make_train_function(force=True)

    def _loss(self, x, y, training=True):
        """The loss of one replica: Keras scales the data loss by 1 / replicas
        (gradients are summed over replicas), so the additive terms are too."""
        pred = self.model(x, training=training)
        data_loss = self.compiled_loss(y, pred, regularization_losses=None)
        for fn in self._multipliers if training else ():
            data_loss = data_loss * fn()
        reg = self.losses  # the wrapped model's and our own additive terms
        total = data_loss + (tf.add_n(reg) / self._replicas() if reg else 0.0)
        return total, pred

    def _apply_arch(self, grads, arch):
        """Arch update with coupled L2 decay, skipped while warm-up disables it."""
        decay = self.arch_weight_decay / self._replicas()  # summed over replicas
        grads = [
            tf.zeros_like(v) if g is None else g + decay * v
            for g, v in zip(grads, arch)
        ]
        if self._distributed():  # see set_arch_enabled
            with tf.init_scope():
                enabled = bool(self.arch_enabled.numpy())
            if enabled:
                self.arch_optimizer.apply_gradients(zip(grads, arch))
            return

        def apply():
            self.arch_optimizer.apply_gradients(zip(grads, arch))
            return tf.constant(True)

        # Slots must exist before apply_gradients runs inside tf.cond.
        self.arch_optimizer.build(arch)
        tf.cond(self.arch_enabled, apply, lambda: tf.constant(False))

    def train_step(self, data):
        arch, weights = arch_variables(self.model), weight_variables(self.model)
        if self.bilevel:
            (x, y), (xv, yv) = data
            with _tape(arch) as tape:
                arch_loss, _ = self._loss(xv, yv)
            self._apply_arch(tape.gradient(arch_loss, arch), arch)
            with _tape(weights) as tape:
                loss, pred = self._loss(x, y)
            self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        else:
            x, y = data
            with tf.GradientTape() as tape:
                loss, pred = self._loss(x, y)
            g_arch, g_w = tape.gradient(loss, [arch, weights])
            self.optimizer.apply_gradients(zip(g_w, weights))
            self._apply_arch(g_arch, arch)
        return self._update_metrics(loss, y, pred)

    def test_step(self, data):
        x, y = data[:2] if isinstance(data, tuple) else (data, None)
        loss, pred = self._loss(x, y, training=False)
        return self._update_metrics(loss, y, pred)

    def _update_metrics(self, loss, y, pred):
        self._loss_tracker.update_state(loss * self._replicas())  # undo the scaling
        self.compiled_metrics.update_state(y, pred)
        return {m.name: m.result() for m in self.metrics}

    def save(self, filepath, *args, **kwargs):
        """Saves the supernet this search trains (``model``), which holds the
        architecture state: ``keras.models.load_model`` gives it back for
        ``derive``. A ``SearchModel`` is a training wrapper that neither H5 nor
        SavedModel can hold (both raised, ``ModelCheckpoint`` at the first
        epoch's end); ``BackupAndRestore`` keeps the whole training state.

        Example:
            >>> search.save("supernet.h5")  # doctest: +SKIP
            >>> supernet = keras.models.load_model("supernet.h5")  # doctest: +SKIP
        """
        return self.model.save(filepath, *args, **kwargs)

    def get_config(self):
        return {
            "model": keras.layers.serialize(self.model),
            "bilevel": self.bilevel,
            "arch_weight_decay": self.arch_weight_decay,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = keras.layers.deserialize(config.pop("model"), custom_objects=custom_objects)
        return cls(model, **config)
