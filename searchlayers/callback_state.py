"""A callback's state in its model's checkpoints, so that nothing is lost when
``keras.callbacks.BackupAndRestore`` resumes a stopped search.

Keras checkpoints the model (and its optimizers) only, and has no place for a
callback's state: a Lagrange multiplier (``FLOPsRegularizer(mode="target")``),
a fitted child (``schedules.FigsCommit``), a decision history
(``decision.DecisionTracker``). ``keep_in_checkpoints`` tracks such variables
as a checkpoint dependency of the model while it trains (not as a Keras
attribute, which would add them to the model's weights); ``release`` takes
them out when training ends, so a model saved later holds none of them. The
variables an attached loss term reads (an entropy coefficient, a cost
multiplier, FiGS' fitted child) are kept the same way while the term is
attached, so that a resumed search restores them too
(``callbacks.regularization``).
"""

import tensorflow as tf

from searchlayers._keras import keras  # noqa: F401  (the docstring example's)

STATE = "searchlayers_callback_state"  # the checkpoint name of the callbacks' state


def keep_in_checkpoints(model, key, **variables):
    """Puts a callback's ``variables`` into ``model``'s checkpoints under
    ``key`` until ``release``. Values read from a backup before this call are
    restored by it (TensorFlow's deferred restoration), later reads restore them
    directly: either order of the callbacks works (see ``Resumable``).

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


class Resumable:
    """Mixin of a callback whose state ``keep_in_checkpoints`` keeps under
    ``self.state_key()``; it is released when training ends.

    A ``fit`` that raised (a stopped search) never ran ``on_train_end``, so its
    state is still on the model. Keras sets up a fit's callbacks (``set_model``)
    before any ``on_train_begin``: dropping it there makes a backup read by the
    next fit on the same model restore into that fit's variables, not into the
    stale ones (a fresh model, as after a restart, has none).

    Example:
        >>> class Counter(Resumable, keras.callbacks.Callback):
        ...     def state_key(self):
        ...         return "Counter"
        >>> Counter().state_key()
        'Counter'
    """

    def state_key(self):
        raise NotImplementedError

    def set_model(self, model):
        super().set_model(model)
        release(model, self.state_key())

    def on_train_end(self, logs=None):
        release(self.model, self.state_key())
        super().on_train_end(logs)


__all__ = ["Resumable", "keep_in_checkpoints", "release"]
