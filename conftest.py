"""Doctest set-up: the package's ``>>>`` examples run in the suite
(``--doctest-modules``), each in a fresh temporary folder, with the names the
docstrings use: ``tf``, ``np``, ``keras``, ``sl``, ``datasets``, a small trained-shape
float ``model`` with ``x``/``y``/``x_train``/``x_test`` and its ``flatbuffer``, a
binary ``binary_model`` whose convs lower to ``LceBconv2d``, ``QuantConv2D`` and a tiny
DARTS-style ``supernet``. The objects are built once per session (tracing is the
cost); examples that train or write many files stay ``+SKIP``.
"""

import gc
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def _doctest_objects():
    import numpy as np
    import larq as lq
    import tensorflow as tf

    import searchlayers as sl
    from searchlayers import datasets, export
    from models.simple import binary_cnn, float_cnn

    x, y = datasets.arrays("digits", "train")
    x_test, _ = datasets.arrays("digits", "test")
    model = float_cnn(channels=(8, 16, 16))
    binary_model = binary_cnn(channels=(32, 32, 32))
    objects = dict(
        tf=tf, np=np, keras=sl.keras, sl=sl, datasets=datasets, lq=lq,
        QuantConv2D=lq.layers.QuantConv2D,
        model=model, x=x[:64], y=y[:64], x_train=x[:64], x_test=x_test[:16],
        binary_model=binary_model,
    )
    with export.quiet_converter():
        objects["flatbuffer"] = export.to_tflite(model)
    return objects


@pytest.fixture(autouse=True)
def _doctest_setup(request, tmp_path, monkeypatch):
    """Gives doctests their names and a temporary working folder (exports write files)."""
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    namespace = request.getfixturevalue("doctest_namespace")
    namespace.update(request.getfixturevalue("_doctest_objects"))
    monkeypatch.chdir(tmp_path)
    yield


# The modules with the longest runs (multi-process launches, supernets traced many
# times, shared module fixtures), heaviest first. `make test` distributes whole
# modules (--dist loadscope: a module fixture is built once, not once per worker)
# and hands these out first, so no long module starts last and leaves one worker
# idle at the end.
HEAVY = (
    "tests/test_multiworker.py",
    "tests/test_tuning.py",
    "tests/models/test_entrannas_supernet.py",
    "tests/test_examples.py",
    "tests/test_applications_derive.py",
    "tests/test_budget.py",
    "tests/test_callbacks.py",
    "tests/models/test_darts.py",
    "tests/test_cost_reference.py",
    "tests/layers/test_entrannas.py",
    "tests/test_persistence.py",
    "tests/layers/test_mixed_op.py",
    "tests/models/test_bars.py",
    "tests/test_search_mirrored.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(HEAVY)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(HEAVY)))


# Python's full (generation 2) garbage collections scan the whole heap, TensorFlow's
# and every graph traced so far: on tests/models/test_darts.py, test_persistence.py
# and layers/test_mixed_op.py, 28 of them took 10.3 s of a 110 s run. Here they run
# 100x less often by the count, and once more whenever the worker's memory has
# grown by another GiB: GC 4.8 s instead of 11.7 s, run 93 s, peak memory
# 1.7 GB instead of 1.3 GB (2.3 GB without the extra collections).
# After each of those collections the survivors are frozen (gc.freeze: never
# scanned again, so a later collection, a sweep trial's included, scans only what
# is newer), and so is everything at the end, before pytest's five last
# collections: six modules ran 6-11 % faster, with the same peak memory (2.6 GB);
# the whole suite in one process 1053 -> 986 s, same peak (5.3 GB), most of it the
# end (48 -> 5 s from the last test to the exit).
GC_EVERY_BYTES = 1 << 30
_collected_at = [0]


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pytest_configure(config):
    gc.set_threshold(700, 10, 1000)  # CPython's default: (700, 10, 10)
    _collected_at[0] = _rss_bytes() if os.path.exists("/proc/self/statm") else 0


def pytest_runtest_teardown(item, nextitem):
    if _collected_at[0] and _rss_bytes() > _collected_at[0] + GC_EVERY_BYTES:
        gc.collect()
        gc.freeze()
        _collected_at[0] = _rss_bytes()


def pytest_unconfigure(config):
    gc.freeze()  # the session's objects die with the process: nothing to scan
