"""Checks the callbacks of ``searchlayers.callbacks`` share."""

from searchlayers.layers.base import search_layers


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
