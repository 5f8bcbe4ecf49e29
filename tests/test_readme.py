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
    if "slim" in namespace:  # the FiGS snippet: a plain, smaller model
        assert namespace["slim"].count_params() < namespace["model"].count_params()
    if "child" in namespace:  # the MixedOp snippet: the derived child has no search layers
        import searchlayers as sl

        assert not sl.layers.search_layers(namespace["child"])
        assert len(namespace["child"].architecture.choices) == 1
