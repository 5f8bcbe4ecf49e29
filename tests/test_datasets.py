"""Tests of searchlayers.datasets: digits splits, tfds (mocked, offline), errors."""

import numpy as np
import pytest

from searchlayers import datasets
from searchlayers._keras import keras  # noqa: F401
import tensorflow as tf


# ------------------------------------------------------------------------ digits


def test_digits_shapes_dtypes_and_range():
    ds = datasets.load("digits", "train", batch_size=16)
    x, y = next(iter(ds))
    assert x.shape == (16, 8, 8, 1)
    assert x.dtype == tf.float32 and y.dtype == tf.int32
    xs, ys = datasets.arrays("digits", "train")
    assert xs.min() >= 0.0 and xs.max() <= 1.0 and xs.max() == 1.0
    assert set(np.unique(ys)) == set(range(10))


def test_digits_split_sizes_partition_the_data():
    sizes = {s: len(datasets.arrays("digits", s)[1]) for s in datasets.SPLITS}
    assert sizes["train"] + sizes["validation"] + sizes["test"] == 1797
    assert sizes["search_weights"] + sizes["search_arch"] == sizes["train"]
    assert sizes == {"train": 1258, "validation": 180, "test": 359,
                     "search_weights": 629, "search_arch": 629}


def _rows(x):
    return {row.tobytes() for row in x.reshape(len(x), -1)}


def test_digits_splits_are_disjoint():
    x_tr, _ = datasets.arrays("digits", "train")
    x_w, _ = datasets.arrays("digits", "search_weights")
    x_a, _ = datasets.arrays("digits", "search_arch")
    # The halves are exactly the two halves of train, in order.
    np.testing.assert_array_equal(np.concatenate([x_w, x_a]), x_tr)
    # Train, validation and test share no images (digits has no duplicates).
    x_val, _ = datasets.arrays("digits", "validation")
    x_te, _ = datasets.arrays("digits", "test")
    overlap = len(_rows(x_tr) & _rows(x_val)) + len(_rows(x_tr) & _rows(x_te))
    overlap += len(_rows(x_val) & _rows(x_te))
    assert overlap == 0


def test_digits_is_deterministic_and_seed_changes_order():
    def first_labels(seed):
        return next(iter(datasets.load("digits", "train", batch_size=64, seed=seed)))[1]

    np.testing.assert_array_equal(first_labels(0), first_labels(0))
    assert not np.array_equal(first_labels(0), first_labels(1))
    # Evaluation splits are not shuffled: the same order every time.
    y1 = np.concatenate([y for _, y in datasets.load("digits", "test").as_numpy_iterator()])
    np.testing.assert_array_equal(y1, datasets.arrays("digits", "test")[1])


def test_digits_resize():
    x, _ = next(iter(datasets.load("digits", "validation", batch_size=4, image_size=32)))
    assert x.shape == (4, 32, 32, 1)
    x, _ = datasets.arrays("digits", "test", image_size=(16, 12), limit=5)
    assert x.shape == (5, 16, 12, 1)
    assert datasets.info("digits", image_size=32) == datasets.DatasetInfo("digits", 10, (32, 32, 1))


def test_search_pairs_zip_both_halves():
    pairs = datasets.search_pairs("digits", batch_size=64)
    batches = list(pairs.as_numpy_iterator())
    # 629 // 64 = 9 full batches in each half.
    assert len(batches) == 9
    (x_w, y_w), (x_a, y_a) = batches[0]
    assert x_w.shape == x_a.shape == (64, 8, 8, 1)
    assert y_w.shape == y_a.shape == (64,)


# -------------------------------------------------------------------------- tfds


def test_cifar10_through_tfds_mock():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        assert datasets.info("cifar10") == datasets.DatasetInfo("cifar10", 10, (32, 32, 3))
        ds = datasets.load("cifar10", "train", batch_size=4)
        x, y = next(iter(ds))
        assert x.shape == (4, 32, 32, 3) and x.dtype == tf.float32
        assert y.dtype == tf.int32
        assert float(tf.reduce_min(x)) >= 0.0 and float(tf.reduce_max(x)) <= 1.0
        x, _ = next(iter(datasets.load("cifar10", "test", batch_size=2, image_size=16)))
        assert x.shape == (2, 16, 16, 3)
        (x_w, _), (x_a, _) = next(iter(datasets.search_pairs("cifar10", batch_size=4)))
        assert x_w.shape == x_a.shape == (4, 32, 32, 3)


def test_tfds_split_mapping():
    names = datasets._tfds_split_names({"train", "test"})
    assert names["validation"] == "train[90%:]" and names["test"] == "test"
    assert names["search_weights"] == "train[:45%]"
    assert names["search_arch"] == "train[45%:90%]"
    names = datasets._tfds_split_names({"train", "validation", "test"})
    assert names["validation"] == "validation" and names["search_arch"] == "train[50%:100%]"


def test_missing_tfds_dataset_offline_raises_clear_error(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def no_internet(self, *args, **kwargs):
        raise tfds.download.DownloadError("simulated: no internet")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_internet)
    with pytest.raises(datasets.DatasetUnavailableError) as err:
        datasets.load("mnist", data_dir=str(tmp_path))
    message = str(err.value)
    assert "'mnist'" in message and str(tmp_path) in message
    assert "data_dir" in message and "digits" in message
    assert "simulated: no internet" in message


def test_missing_tfds_dataset_without_download(tmp_path):
    with pytest.raises(datasets.DatasetUnavailableError, match="download=False"):
        datasets.load("mnist", data_dir=str(tmp_path), download=False)


# ------------------------------------------------------------------------ errors


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="digits") as err:
        datasets.load("no_such_dataset_xyz")
    assert "TensorFlow Datasets" in str(err.value)


def test_unknown_split():
    with pytest.raises(ValueError, match="search_arch"):
        datasets.load("digits", split="training")
