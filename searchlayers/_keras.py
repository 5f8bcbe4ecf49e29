"""The one Keras module of the package: Keras 2 (tf_keras), guarded.

Larq and Larq Compute Engine only work with Keras 2. TensorFlow >= 2.16 resolves
``tf.keras`` lazily, on first attribute access, to Keras 3 unless
``TF_USE_LEGACY_KERAS=1`` is set first; so we set it before importing TensorFlow
and then check that the resolution really gave Keras 2.
"""

import os
import sys


os.environ["TF_USE_LEGACY_KERAS"] = "1"

from searchlayers import _logs  # noqa: E402

_logs.import_tensorflow()  # quiet: no start-up banners, no no-GPU "E" line (see _logs)

_ADVICE = (
    "searchlayers needs Keras 2 (tf_keras) as tf.keras, but tf.keras was already "
    "resolved to Keras 3 before searchlayers was imported. Set the environment "
    "variable TF_USE_LEGACY_KERAS=1 before anything imports TensorFlow (for example "
    "`export TF_USE_LEGACY_KERAS=1` in the shell, or "
    "`os.environ['TF_USE_LEGACY_KERAS'] = '1'` as the first line of your script), "
    "or import searchlayers before touching tf.keras."
)


def _route_module_imports(tf):
    """Makes ``import tensorflow.keras...`` (used by larq) find tf_keras.

    TensorFlow picks the folder that module imports of ``tensorflow.keras``
    search when it is itself imported; if that happened before the variable
    was set, we put tf_keras' folder first, as TensorFlow would have.
    """
    import tf_keras.api._v2 as v2

    folder = os.path.dirname(v2.__file__)
    if tf.__path__[0] != folder:
        tf.__path__.insert(0, folder)


def _check_keras2():
    import importlib

    import tensorflow as tf  # (tf.keras resolves on first attribute access)
    import tf_keras

    # Touching tf.keras.layers resolves the lazy loader; with Keras 3 it would
    # give keras.layers, not tf_keras.layers.
    if tf.keras.layers.Dense is not tf_keras.layers.Dense:
        raise ImportError("tf.keras is already Keras 3. " + _ADVICE)
    if "tensorflow.keras" not in sys.modules:
        _route_module_imports(tf)
    module_layers = importlib.import_module("tensorflow.keras.layers")
    if module_layers.Dense is not tf_keras.layers.Dense:
        raise ImportError("`import tensorflow.keras` already gives Keras 3. " + _ADVICE)

    # Touching tf.keras.layers resolves the lazy loader; with Keras 3 it would
    # give keras.layers, not tf_keras.layers.
    if tf.keras.layers.Dense is not tf_keras.layers.Dense:
        raise ImportError("tf.keras is Keras 3. " + _ADVICE)
    return tf_keras


keras = _check_keras2()


def require_built(model, why):
    """Raises a clear error unless ``model`` is a built Keras model.

    ``why`` completes "so ...", e.g. "its layer shapes are unknown".

    Example:
        >>> require_built(keras.Sequential([keras.Input((2,))]), "it has no shapes")
    """
    if not isinstance(model, keras.Model):
        text = " ".join(repr(model).split())
        text = text if len(text) <= 60 else text[:57] + "..."
        raise TypeError(f"{_entry_point()}: model must be a keras.Model, got {text} "
                        f"({type(model).__name__}).")
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so {why}. Build it first: call it on "
            "an input, call model.build(input_shape), or give it an Input "
            "(keras.Input(shape) / Sequential([keras.Input(shape), ...]))."
        )


def _entry_point():
    """The public package function or class the user called (the outermost
    searchlayers frame of a public name), e.g. ``cost.profile``; for messages."""
    import sys

    frame, found = sys._getframe(2), "searchlayers"
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        qualname = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
        if (module.startswith("searchlayers") and not qualname.startswith("_")
                and "<" not in qualname):
            parts = [p for p in qualname.split(".") if not p.startswith("_")]
            found = ".".join([module.rsplit(".", 1)[-1], *parts])
        frame = frame.f_back
    return found


def input_like(tensor):
    """A new ``keras.Input`` with the spec and the name of ``tensor``, an input of a model.

    The name comes from the tensor's ``InputLayer``: a KerasTensor made from a
    ``type_spec`` has no name of its own (``tensor.name is None``), and a model
    rebuilt from it (derive, insert_masks) would otherwise lose the input's name.

    Example:
        >>> m = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(1)])
        >>> input_like(m.inputs[0]).name
        'features'
    """
    import tensorflow as tf

    name = tensor._keras_history.layer.name
    if type(tensor.type_spec) is tf.TensorSpec:
        return keras.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype, name=name)
    return keras.Input(type_spec=tensor.type_spec, name=name)  # ragged / sparse


class PlainCall:
    """Layer mixin: Keras runs ``call`` as written, not converted by AutoGraph.

    Keras converts the ``call`` of every subclassed layer with AutoGraph each
    time it traces it: when a functional model is built and in every
    ``tf.function`` trace, recursively through every function the call uses.
    The calls of this package branch on tensors only with ``tf.cond`` /
    ``tf.switch_case``, so the conversion only costs Python time: 25-65 % of a
    supernet's Keras build and up to 35 % of its first step (BARS, BNAS; a few %
    for DARTS and the single-path spaces; ``benchmarks/first_step.py``). tf_keras
    has no public switch for it; this overrides its hook,
    ``Layer._should_use_autograph``.

    Example:
        >>> class Double(PlainCall, keras.layers.Layer):
        ...     def call(self, x):
        ...         return 2 * x
        >>> Double()._should_use_autograph()
        False
    """

    def _should_use_autograph(self):
        return False


class ShapeOnlyConstruction:
    """Layer mixin: in a functional model, the output comes from ``compute_output_shape``.

    To connect a layer into a functional model, tf_keras traces its ``call`` once
    in a scratch graph that it then throws away, only to learn the output's shape
    and dtype. A search layer's call holds every candidate (a DARTS cell edge: 7
    ops and their mixture), so that trace is most of a supernet's Keras build.
    A layer with this mixin whose ``build`` creates every weight and sub-layer and
    whose ``compute_output_shape`` is its own skips the trace; others (and calls
    with Keras masks or extra arguments) go the usual way. tf_keras has no public
    switch for it; this overrides its hook, ``Layer._infer_output_signature``.

    Example:
        >>> class Twice(ShapeOnlyConstruction, keras.layers.Layer):
        ...     def call(self, x):
        ...         return tf.concat([x, x], -1)
        ...     def compute_output_shape(self, input_shape):
        ...         return tf.TensorShape(input_shape)[:-1].concatenate([2 * input_shape[-1]])
        >>> keras.Input((3,)).shape, Twice()(keras.Input((3,))).shape
        (TensorShape([None, 3]), TensorShape([None, 6]))
    """

    def _infer_output_signature(self, inputs, args, kwargs, input_masks):
        import tensorflow as tf
        from tf_keras.src.engine import keras_tensor

        own_shape = type(self).compute_output_shape is not keras.layers.Layer.compute_output_shape
        plain = own_shape and not args and set(kwargs) <= {"training"} and input_masks is None
        if not plain:
            return super()._infer_output_signature(inputs, args, kwargs, input_masks)
        # Built where Keras builds it, in a scratch graph under the layer's name scope:
        # the same layer and variable names (sub-layer names count per graph).
        with tf.__internal__.FuncGraph(f"{self.name}_scratch_graph").as_default():
            with tf.name_scope(self._name_scope()):
                self._maybe_build(inputs)
        shapes = tf.nest.map_structure(lambda t: t.shape, inputs)
        dtype = self.compute_dtype or tf.nest.flatten(inputs)[0].dtype
        output = tf.TensorSpec(tf.TensorShape(self.compute_output_shape(shapes)), dtype)
        self._set_save_spec(inputs, args, kwargs)
        return keras_tensor.KerasTensor(output)


def register(cls):
    """Registers ``cls`` as a Keras serializable under the package name.

    Example:
        >>> @register
        ... class MyLayer(keras.layers.Layer):
        ...     pass
        >>> keras.utils.get_registered_name(MyLayer)
        'searchlayers>MyLayer'
    """
    return keras.utils.register_keras_serializable(package="searchlayers")(cls)


def deserialize_layer(config):
    """``keras.layers.deserialize`` for a layer nested in another's config, which
    finds this package's (registered) classes in an H5 load too: tf_keras' H5 path
    looks a class up by its bare name, and ``register`` files it under
    "searchlayers>Name".

    Example:
        >>> from searchlayers.layers.binary import QuantConv
        >>> config = keras.layers.serialize(QuantConv(4, 3, name="q"))
        >>> type(deserialize_layer(config)).__name__
        'QuantConv'
    """
    registered = keras.utils.get_registered_object(config.get("registered_name") or "")
    custom = {config["class_name"]: registered} if registered is not None else None
    return keras.layers.deserialize(config, custom_objects=custom)


__all__ = ["PlainCall", "deserialize_layer", "input_like", "keras", "register",
           "require_built"]
