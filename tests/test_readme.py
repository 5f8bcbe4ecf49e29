"""The README's Python snippets run as written (each in a fresh namespace)."""

import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _snippets():
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_starts_with_the_two_commands():
    with open(README) as f:
        lines = f.read().splitlines()
    block = lines[lines.index("```sh") + 1:lines.index("```sh") + 3]
    assert [line.split()[:2] for line in block] == [["make", "demo"], ["make", "test"]]


@pytest.mark.parametrize("index", range(len(_snippets())))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets write runs/ and *.tflite relative to the cwd
    namespace = {}
    exec(compile(_snippets()[index], f"README snippet {index}", "exec"), namespace)
    if "slim" in namespace:  # the FiGS snippet: a plain, smaller Sequential ...
        import numpy as np

        import searchlayers as sl

        slim, model, x = namespace["slim"], namespace["model"], namespace["x"]
        assert isinstance(slim, sl.keras.Sequential) and not sl.layers.search_layers(slim)
        assert slim.count_params() < model.count_params()
        assert slim.count_params() == sl.cost.profile(slim).total.params
        # ... with the outputs of the supernet under its deterministic kept-channel masks
        sl.apply_architecture(model, slim.architecture)
        np.testing.assert_allclose(model.predict(x[:8], verbose=0),
                                   slim.predict(x[:8], verbose=0), atol=1e-5)
    if "child" in namespace:  # the MixedOp snippet: the derived child has no search layers
        import searchlayers as sl

        assert not sl.layers.search_layers(namespace["child"])
        assert len(namespace["child"].architecture.choices) == 1
