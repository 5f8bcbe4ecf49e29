"""The one retraining recipe: a derived child trained and scored on a dataset.

Every caller that retrains a searched (or a random) child uses ``retrain``:
``searchlayers.tuning`` (sweep trials), ``searchlayers.baselines`` (random
children at equal cost, same recipe and seeds), the examples and the
benchmarks. A comparison between a searched child and a random one is only
fair when both were trained by the same code.

The recipe:

- weights: a fresh copy (``keras.models.clone_model``, new initial weights)
  unless ``inherit`` (fine-tune the child itself). Layers the child keeps
  frozen (``trainable=False``: e.g. the 0/1 channel maps of a FiGS derive) are
  part of the architecture, not weights to learn: a fresh copy takes their
  weights and keeps them frozen, unless ``unfreeze`` (a BN-NAS child, whose
  frozen convolutions must be trained from scratch);
- optimizer: ``"sgd"`` (momentum 0.9, cosine decay from ``lr`` to
  ``alpha * lr`` over the run: the DARTS weight recipe) or ``"adam"`` (``lr``);
- data: a dataset name of ``searchlayers.datasets`` (its train split, scored on
  its test split) or ``(train, test)``: a batched ``tf.data.Dataset`` or an
  ``(x, y)`` pair each;
- ``seed`` fixes the fresh weights and the batch order.

Example:
    >>> model, accuracy = retrain(child, "digits", epochs=2, seed=0)  # doctest: +SKIP
    >>> 0.0 <= accuracy <= 1.0  # doctest: +SKIP
    True
"""

import numpy as np
import tensorflow as tf

from searchlayers import checks, datasets
from searchlayers._keras import keras

OPTIMIZERS = ("sgd", "adam")
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def sgd(lr, steps, alpha=0.01):
    """SGD, momentum 0.9, cosine decay from ``lr`` to ``alpha * lr`` over ``steps``.

    Example:
        >>> opt = sgd(0.05, 100)
        >>> round(float(opt.learning_rate), 4), opt.momentum
        (0.05, 0.9)
    """
    lr = checks.positive("retrain.sgd", "lr", lr)
    steps = checks.integer("retrain.sgd", "steps", steps, low=1)  # 0: a schedule of nothing
    alpha = checks.number("retrain.sgd", "alpha", alpha, low=0, high=1)
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=alpha)
    return keras.optimizers.SGD(schedule, momentum=0.9)


def fresh_copy(child, unfreeze=False):
    """A newly initialized copy of ``child``; frozen layers keep their weights
    (and stay frozen) unless ``unfreeze``, which makes every layer trainable.

    Example:
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> m.layers[0].trainable = False
        >>> copy = fresh_copy(m)
        >>> np.array_equal(copy.layers[0].kernel.numpy(), m.layers[0].kernel.numpy())
        True
    """
    model = keras.models.clone_model(child)
    if unfreeze:
        model.trainable = True
    else:
        _keep_frozen(child, model)
    return model


def _keep_frozen(old_model, new_model):
    for old, new in zip(old_model.layers, new_model.layers):
        if isinstance(old, keras.Model):  # a nested model: its frozen layers too
            _keep_frozen(old, new)
        elif not old.trainable and old.weights:
            new.set_weights(old.get_weights())
            new.trainable = False


def _split(data, batch_size, seed):
    """``(train dataset, (x_test, y_test))`` of ``data``."""
    if isinstance(data, str):
        train = datasets.load(data, "train", batch_size=batch_size, seed=seed or 0)
        return train, datasets.arrays(data, "test")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            f"retrain: data must be a dataset name (e.g. 'digits') or (train, test), got "
            f"{type(data).__name__}.")
    train, test = data
    if not isinstance(train, tf.data.Dataset):
        x, y = train
        train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
            len(x), seed=seed or 0).batch(batch_size)
    if isinstance(test, tf.data.Dataset):
        xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in test))
        test = np.concatenate(xs), np.concatenate(ys)
    return train, test


def accuracy(model, x, y, batch_size=512):
    """Top-1 accuracy of ``model`` (logits or probabilities) on arrays ``x, y``.

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda t: t)])
        >>> accuracy(m, np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0]))
        0.5
    """
    batch_size = checks.positive("retrain.accuracy", "batch_size", batch_size, integer=True)
    pred = np.concatenate([np.argmax(model(x[i:i + batch_size], training=False), axis=-1)
                           for i in range(0, len(x), batch_size)])
    return float(np.mean(pred == np.asarray(y).reshape(-1)))


def retrain(child, data="digits", epochs=2, batch_size=64, optimizer="sgd", lr=0.05,
            alpha=0.01, inherit=False, unfreeze=False, seed=None, validation=None,
            verbose=0):
    """Trains ``child`` (see the module docstring); returns ``(model, test_accuracy)``.

    Args:
        child: a built Keras model (e.g. ``searchlayers.derive``'s output).
        data: a ``searchlayers.datasets`` name, or ``(train, test)``.
        epochs: training epochs (0: score the child as it is).
        batch_size: batch size of a named dataset or of ``(x, y)`` arrays.
        optimizer, lr, alpha: ``"sgd"`` (cosine to ``alpha * lr``) or ``"adam"``.
        inherit: fine-tune ``child`` itself instead of a fresh copy.
        unfreeze: make every layer trainable (fresh copy only).
        seed: fixes the fresh weights and the batch order (None: leaves the
            global seed alone).
        validation: a batched dataset passed to ``fit`` as validation data.
        verbose: ``fit`` verbosity.

    Example:
        >>> model, acc = retrain(child, epochs=5, optimizer="adam", lr=3e-3)  # doctest: +SKIP
    """
    where = "retrain"
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"{where}: optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
    if not isinstance(child, keras.Model):
        raise checks.ArgumentTypeError(
            f"{where}: child must be a built keras.Model (e.g. searchlayers.derive's "
            f"output), got {checks.show(child)} ({type(child).__name__}).")
    epochs = checks.integer(where, "epochs", epochs, low=0)
    lr = checks.positive(where, "lr", lr)
    checks.number(where, "alpha", alpha, low=0, high=1)
    batch_size = checks.positive(where, "batch_size", batch_size, integer=True)
    checks.integer(where, "seed", seed, none_ok=True)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    train, (x_test, y_test) = _split(data, batch_size, seed)
    model = child if inherit else fresh_copy(child, unfreeze)
    steps = max(epochs, 1) * max(int(train.cardinality()), 1)  # epochs=0 compiles, never steps
    opt = sgd(lr, steps, alpha) if optimizer == "sgd" else keras.optimizers.Adam(lr)
    model.compile(optimizer=opt, loss=LOSS, metrics=["accuracy"])
    if epochs > 0:
        model.fit(train, epochs=epochs, verbose=verbose, validation_data=validation)
    return model, accuracy(model, x_test, y_test)


__all__ = ["LOSS", "OPTIMIZERS", "accuracy", "fresh_copy", "retrain", "sgd"]
