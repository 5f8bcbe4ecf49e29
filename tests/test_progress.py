"""searchlayers.progress: phase lines, the item counter's estimate (by hand, on a
fake clock), and FirstStep's lines around the first step of a real fit."""

import io

import numpy as np
import pytest

import searchlayers as sl
from searchlayers import progress

K = sl.keras


def clock(*times):
    return iter(times).__next__


def test_phase_prints_before_and_after_with_the_seconds():
    out = io.StringIO()
    with progress.phase("retraining the child", stream=out, clock=clock(5.0, 7.25)):
        out.write("inside\n")
    assert out.getvalue().splitlines() == [
        "retraining the child ...", "inside", "retraining the child: 2.2 s"]


def test_counter_estimates_what_is_left_from_the_mean_of_finished_items():
    out = io.StringIO()
    c = progress.Counter(4, "trial", stream=out, clock=clock(0.0, 10.0, 10.0, 40.0))
    c.begin("darts budget 0.5")
    c.end()
    c.begin("darts budget 0.25")
    c.end()
    # mean of 10 s and 30 s = 20 s, times the 2 trials left
    assert out.getvalue().splitlines() == [
        "[trial 1/4] darts budget 0.5 ...", "[trial 1/4] done in 10 s; about 30 s left",
        "[trial 2/4] darts budget 0.25 ...", "[trial 2/4] done in 30 s; about 40 s left"]


@pytest.mark.parametrize("total", [0, -1, 2.5, True, "4"])
def test_counter_refuses_a_bad_total(total):
    with pytest.raises(ValueError, match=rf"progress.Counter: total must be an integer >= 1 or "
                                         rf"None, got {total!r}"):
        progress.Counter(total)


def test_first_step_says_building_before_the_first_batch_and_its_time_after():
    out = io.StringIO()
    seen = []

    class Probe(K.callbacks.Callback):  # what had been printed when batch 0 ran
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(out.getvalue())

    m = K.Sequential([K.Input((2,)), K.layers.Dense(1)])
    m.compile("sgd", "mse")
    m.fit(np.ones((8, 2)), np.ones(8), batch_size=4, epochs=2, verbose=0,
          callbacks=[progress.FirstStep(stream=out), Probe()])
    lines = out.getvalue().splitlines()
    assert seen[0] == "building the search graph (tracing the training step) ...\n"
    assert len(lines) == 2 and lines[1].startswith("first step after ")
    assert float(lines[1].split()[-2]) >= 0.0
    config = progress.FirstStep("x").get_config()
    assert progress.FirstStep.from_config(config).text == "x"


def test_search_model_fit_says_it_builds_the_graph_unless_silent(capsys):
    from conftest import tiny_supernet

    x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    y = np.arange(8) % 10
    search = sl.SearchModel(tiny_supernet(), bilevel=False)
    search.compile("adam", K.losses.SparseCategoricalCrossentropy(from_logits=True))
    search.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert "building the search graph" not in capsys.readouterr().out
    search.fit(x, y, batch_size=4, epochs=1, verbose=2)
    out = capsys.readouterr().out
    assert out.index("building the search graph") < out.index("first step after")
