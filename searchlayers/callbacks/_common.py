"""Checks and state the callbacks of ``searchlayers.callbacks`` share."""

import tensorflow as tf

from searchlayers.layers.base import search_layers

STATE = "searchlayers_callback_state"  # the checkpoint name of the callbacks' state


def writes_files(model):
    """Whether this process writes a callback's files: all but the non-chief
    workers of a multi-worker strategy. Those still compute every value (reading
    some variables is a collective op that needs every worker)."""
    # Imported here: ``import searchlayers`` must not import ``launch``, or
    # ``python -m searchlayers.launch`` finds it imported and runpy warns.
    from searchlayers.launch import is_chief

    return is_chief(model.distribute_strategy)


def require_search_layers(model, where):
    """Raises when ``model`` has no search layer for the callback ``where`` to steer."""
    if not search_layers(model):
        raise ValueError(f"{where}: model '{model.name}' has no search layers.")


def keep_in_checkpoints(model, key, **variables):
    """Puts a callback's ``variables`` into ``model``'s checkpoints until
    ``release``, so that ``BackupAndRestore`` restores a stopped search with the
    state its callbacks had (a Lagrange multiplier, a fitted child): values
    read from a backup before this call are restored by it.

    Keras checkpoints the model only, and has no place for a callback's state:
    it is tracked as a checkpoint dependency of the model (not as a Keras
    attribute, which would add the variables to the model's weights).

    Example:
        >>> import tempfile
        >>> from searchlayers._keras import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> keep_in_checkpoints(m, "mine", step=tf.Variable(3))
        >>> path = tf.train.Checkpoint(model=m).write(tempfile.mkdtemp() + "/ckpt")
        >>> [name for name, _ in tf.train.list_variables(path) if "mine" in name]
        ['model/searchlayers_callback_state/mine/step/.ATTRIBUTES/VARIABLE_VALUE']
        >>> len(m.weights)  # not a weight of the model
        2
    """
    holder = model.__dict__.get(STATE)
    if holder is None:
        holder = tf.Module(name=STATE)
        model.__dict__[STATE] = holder  # beside Keras' attribute tracking, on purpose
        # (overwrite: a model loaded from a SavedModel may hold an old one)
        model._track_trackable(holder, name=STATE, overwrite=True)  # pylint: disable=W0212
    state = tf.Module(name=key)
    for name, variable in variables.items():
        setattr(state, name, variable)
    setattr(holder, key, state)  # restores what a backup read before holds for ``key``


def release(model, key):
    """Takes ``key``'s state out of ``model``'s checkpoints (after training: a
    model saved later holds none of it)."""
    holder = model.__dict__.get(STATE)
    if holder is not None and hasattr(holder, key):
        delattr(holder, key)  # tf.Module untracks it
