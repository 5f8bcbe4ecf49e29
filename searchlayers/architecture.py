"""``Architecture``: the validated JSON record of a search's discrete choices.

A record maps each search layer's name to its choice: an integer index for
``MixedOp`` and the gates, a list of kept channel indices for ``FiGSMask``, a
list of ``[input, op_name]`` pairs per node for ``EnTranCell``. ``names`` holds
the human-readable name of each choice (``"sep_conv_3x3"``), ``meta`` how it was
found.

Checked twice:

- on creation (the constructor, ``from_json``, ``load``): the shape of the
  record, before any model is known (a mapping of names to choices; indices are
  integers >= 0; ``names`` only for layers that have a choice);
- against a model (``validate(model)``, run by ``derive(architecture=...)``
  and ``apply_architecture``): every search layer is covered, each choice is
  one the layer accepts (``SearchLayer.check_choice``), ``names`` agree with
  the indices, and no entry names a layer the model lacks (an error, or with
  ``strict=False`` a warning that names them). All mismatches are reported in
  one error, so a record made for another model says what differs.

Loading only parses JSON: no code is ever imported or evaluated.

Example:
    >>> arch = Architecture({"mixed_op": 2}, {"mixed_op": "sep_conv_3x3"})
    >>> Architecture.from_json(arch.to_json()) == arch
    True
"""

import dataclasses
import json
import warnings

import numpy as np

from searchlayers import checks
from searchlayers.layers.base import search_layers

_FIELDS = ("choices", "names", "meta")


@dataclasses.dataclass
class Architecture:
    """The discrete choice of every search layer, keyed by layer name.

    Args:
        choices: ``{layer name: choice}``.
        names: ``{layer name: readable name of the choice}`` (optional).
        meta: anything JSON-serializable about how it was found.

    Example:
        >>> Architecture({"edge": -1})
        Traceback (most recent call last):
        ...
        ValueError: Architecture: choices['edge'] must be an integer index >= 0 or a list (mask / cell record), got -1.
    """

    choices: dict
    names: dict = dataclasses.field(default_factory=dict)
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.choices = _mapping("choices", self.choices)
        self.names = _mapping("names", self.names)
        self.meta = _mapping("meta", self.meta, keys=False)
        self.choices = {name: _choice(name, c) for name, c in self.choices.items()}
        extra = sorted(set(self.names) - set(self.choices))
        if extra:
            checks.fail("Architecture", "names", extra, "names of layers that have a choice")

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, default=_jsonable)

    @classmethod
    def from_json(cls, text):
        """The record in ``text`` (as written by ``to_json``).

        Example:
            >>> Architecture.from_json("[1, 2]")
            Traceback (most recent call last):
            ...
            searchlayers.checks.ArgumentTypeError: Architecture.from_json: the JSON must be an object with keys 'choices', 'names', 'meta', got [1, 2] (list).
        """
        checks.string("Architecture.from_json", "text", text, nonempty=False)
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"Architecture.from_json: text is not JSON ({error}).") from None
        allowed = "an object with keys 'choices', 'names', 'meta'"
        if not isinstance(record, dict):
            raise checks.ArgumentTypeError(
                f"Architecture.from_json: the JSON must be {allowed}, got "
                f"{checks.show(record)} ({type(record).__name__})."
            )
        unknown = sorted(set(record) - set(_FIELDS))
        if unknown or "choices" not in record:
            checks.fail("Architecture.from_json", "the JSON", sorted(record), allowed +
                        " ('choices' required)")
        return cls(**record)

    def save(self, path):
        with open(path, "w") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_json(f.read())

    def validate(self, model, strict=True):
        """This record with each choice normalized by its layer, if it fits
        ``model``; else one ValueError listing every mismatch.

        ``strict=False`` turns entries for layers that ``model`` lacks into a
        warning naming them (they are dropped) instead of an error.

        Example:
            >>> Architecture({"other": 1}).validate(model)  # doctest: +SKIP
            ValueError: Architecture does not fit model 'net' (2 mismatches): ...
        """
        layers = search_layers(model)
        known = {layer.name for layer in layers}
        problems, choices = [], {}
        for layer in layers:
            if layer.name not in self.choices:
                problems.append(f"no choice for search layer '{layer.name}'")
                continue
            try:
                choices[layer.name] = layer.check_choice(self.choices[layer.name])
            except ValueError as error:  # ArgumentTypeError included
                problems.append(str(error).rstrip("."))
                continue
            problems.extend(_name_mismatch(layer, choices[layer.name], self.names))
        unknown = sorted(set(self.choices) - known)
        if unknown and strict:
            problems.append(f"layers the model does not have: {unknown} (strict=False "
                            "ignores them)")
        elif unknown:
            warnings.warn(f"Architecture: ignoring choices for layers model '{model.name}' "
                          f"does not have: {unknown}.", stacklevel=2)
        if problems:
            raise ValueError(
                f"Architecture does not fit model '{model.name}' ({len(problems)} "
                f"mismatch{'es' if len(problems) > 1 else ''}): {'; '.join(problems)}."
            )
        names = {n: v for n, v in self.names.items() if n in known}
        return Architecture(choices, names, dict(self.meta))


def as_architecture(value, where):
    """``value`` if it is an ``Architecture``; a plain mapping of choices is
    wrapped; anything else is an ArgumentTypeError naming ``where``.

    Example:
        >>> as_architecture({"op": 1}, "derive()").choices
        {'op': 1}
    """
    if isinstance(value, Architecture):
        return value
    if isinstance(value, dict):
        return Architecture(value)
    raise checks.ArgumentTypeError(
        f"{where}: architecture must be an Architecture (or a dict of layer name -> "
        f"choice), got {checks.show(value)} ({type(value).__name__})."
    )


def _mapping(field, value, keys=True):
    if not isinstance(value, dict):
        raise checks.ArgumentTypeError(
            f"Architecture: {field} must be a dict of layer name -> value, got "
            f"{checks.show(value)} ({type(value).__name__})."
        )
    bad = [k for k in value if not isinstance(k, str)]
    if keys and bad:
        checks.fail("Architecture", f"{field} keys", bad, "layer names (strings)")
    return dict(value)


def _choice(name, value):
    """Shape check without a model: an index >= 0 or a (nested) list."""
    allowed = "an integer index >= 0 or a list (mask / cell record)"
    if isinstance(value, (list, tuple, np.ndarray)):
        return _jsonable(value) if isinstance(value, np.ndarray) else list(value)
    return checks.integer("Architecture", f"choices[{name!r}]", value, low=0, allowed=allowed)


def _name_mismatch(layer, choice, names):
    given = names.get(layer.name)
    choice_names = getattr(layer, "choice_names", None)
    if given is None or not isinstance(choice, int) or not hasattr(layer, "num_choices"):
        return []
    actual = choice_names[choice]
    if given != actual:
        return [f"'{layer.name}': choice {choice} is {actual!r} but names says {given!r}"]
    return []


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serializable: {value!r}")
