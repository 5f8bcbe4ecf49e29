"""What every method example does after its search: retrain the derived child on
digits, and export it (TFLite or LCE) with a parity check.

One implementation for all examples (DARTS, BNAS, BARS, EnTranNAS, BN-NAS, FiGS),
so a change of the retraining recipe or of the export report happens once.

Example:
    >>> from examples import common
    >>> model, accuracy = common.retrain(child, epochs=5)  # doctest: +SKIP
    >>> common.export_tflite(model, "out/darts")["max_abs_diff"] < 1e-4  # doctest: +SKIP
    True
"""

import os

import numpy as np

from searchlayers import datasets, export
from searchlayers._keras import keras

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def sgd(lr, steps, alpha=0.01):
    """SGD, momentum 0.9, cosine decay from ``lr`` to ``alpha * lr`` over ``steps``
    (the DARTS weight recipe).

    Example:
        >>> float(sgd(0.05, 100).learning_rate(100))  # doctest: +ELLIPSIS
        0.0005...
    """
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(int(steps), 1), alpha=alpha)
    return keras.optimizers.SGD(schedule, momentum=0.9)


def retrain(child, epochs, batch_size=64, lr=0.05, optimizer="sgd", alpha=0.01, inherit=False,
            unfreeze=False, seed=None, validation=False, verbose=0):
    """Trains ``child`` on the digits train split; returns ``(model, test_accuracy)``.

    A fresh-weight copy (``clone_model``) unless ``inherit``, which fine-tunes
    ``child`` itself. ``optimizer`` is ``"sgd"`` (``sgd``: cosine decay to
    ``alpha * lr``) or ``"adam"``. ``unfreeze`` makes every layer trainable (a
    child of a BN-only supernet keeps its ``trainable=False`` flags; a FiGS
    child's zero-fill maps must stay frozen, so it is off by default). ``seed``
    fixes the fresh weights and the batch order.

    Example:
        >>> model, accuracy = retrain(child, epochs=5)  # doctest: +SKIP
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"retrain: optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = child if inherit else keras.models.clone_model(child)
    if unfreeze:
        model.trainable = True
    train = datasets.load("digits", "train", batch_size=batch_size, seed=seed or 0)
    steps = epochs * int(train.cardinality())
    opt = sgd(lr, steps, alpha) if optimizer == "sgd" else keras.optimizers.Adam(lr)
    model.compile(optimizer=opt, loss=LOSS, metrics=["accuracy"])
    if epochs > 0:
        val = datasets.load("digits", "validation", batch_size=256) if validation else None
        model.fit(train, epochs=epochs, verbose=verbose, validation_data=val)
    x_test, y_test = datasets.arrays("digits", "test")  # one call: no evaluate() tracing
    accuracy = np.mean(np.argmax(model(x_test, training=False), axis=-1) == y_test)
    return model, float(accuracy)


def export_tflite(model, out, name="child.tflite"):
    """Writes the float TFLite flatbuffer ``out/name``; returns the parity report
    on the digits test split as a dict (with ``path``).

    Example:
        >>> export_tflite(model, "out/darts")["max_abs_diff"] < 1e-4  # doctest: +SKIP
        True
    """
    path = None if out is None else os.path.join(out, name)
    with export.quiet_converter():
        flatbuffer = export.to_tflite(model, path)
    x_test, _ = datasets.arrays("digits", "test")
    return {"path": path, **vars(export.parity(model, flatbuffer, x_test))}


def export_lce(model, out=None, name="child.lce.tflite"):
    """LCE flatbuffer of a larq model (written to ``out/name`` when ``out``) and
    its float TFLite twin; returns ``(lce_report, parity, lce_bytes, tflite_bytes)``.

    ``lce_report`` says which binary convolutions became ``LceBconv2d``;
    ``parity`` compares the LCE interpreter with Keras on the digits test split.

    Example:
        >>> report, parity, lce, tfl = export_lce(model)  # doctest: +SKIP
        >>> report["all_lowered"], len(lce) < len(tfl)  # doctest: +SKIP
        (True, True)
    """
    with export.quiet_converter():
        lce = export.to_lce(model, None if out is None else os.path.join(out, name))
        tflite = export.to_tflite(model)
    x_test, _ = datasets.arrays("digits", "test")
    return export.lce_report(model, lce), export.parity(model, lce, x_test), lce, tflite
