"""Image datasets as ``tf.data`` pipelines, with fixed splits for search.

Two sources:

* ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10
  classes). Always available offline; the default dataset of the project.
* any TensorFlow Datasets (tfds) image-classification name, e.g. ``"cifar10"``,
  ``"mnist"``. It is read from ``data_dir`` when prepared there, downloaded
  otherwise; when it is neither prepared nor downloadable,
  :class:`DatasetUnavailableError` says what to do.

Every dataset offers the same five splits:

========================  ======================================================
split                     content
========================  ======================================================
``"train"``               the training data
``"validation"``          held-out data for model selection
``"test"``                held-out data for the final number
``"search_weights"``      first half of ``"train"`` (network weights, DARTS)
``"search_arch"``         second half of ``"train"`` (architecture variables)
========================  ======================================================

``search_weights`` and ``search_arch`` are disjoint and together make ``train``
(the DARTS convention: the training set is halved for bi-level search).

For ``"digits"`` the split is a fixed permutation (seed 0, independent of the
``seed`` argument): 20% test (359), 10% validation (180), the rest train (1258,
halves of 629 each).

For tfds datasets the splits are tfds split slices:

* with tfds ``validation`` and ``test`` splits: they are used as they are;
* with only ``test``: validation is the last 10% of tfds ``train``
  (``train[90%:]``) and train the first 90%;
* with only ``validation``: it becomes our test, and validation is carved from
  ``train`` as above;
* with neither: ``train[:80%]``, ``train[80%:90%]``, ``train[90%:]``.

Images come as float32 in [0, 1] (uint8 images are divided by 255, digits by
16), NHWC, optionally resized (bilinear); labels as int32 class indices.

Example:
    >>> from searchlayers import datasets
    >>> ds = datasets.load("digits", split="train", batch_size=32)
    >>> x, y = next(iter(ds))
    >>> x.shape, y.dtype.name
    (TensorShape([32, 8, 8, 1]), 'int32')
"""

import dataclasses

import numpy as np

from searchlayers._keras import keras  # noqa: F401  (Keras-2 guard first)
import tensorflow as tf

from searchlayers import checks


SPLITS = ("train", "validation", "test", "search_weights", "search_arch")
BUILTIN = ("digits",)

_DIGITS_SPLIT_SEED = 0
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_VALIDATION_FRACTION = 0.1


class DatasetUnavailableError(RuntimeError):
    """A tfds dataset is not prepared locally and cannot be downloaded.

    Example:
        >>> try:
        ...     datasets.load("cifar10", data_dir="/empty", download=False)
        ... except datasets.DatasetUnavailableError as e:
        ...     print(e)  # names the dataset, data_dir, and the ways out
        Dataset 'cifar10' is not prepared in /empty and could not be downloaded ...
    """


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    Example:
        >>> datasets.info("digits")
        DatasetInfo(name='digits', num_classes=10, input_shape=(8, 8, 1))
    """

    name: str
    num_classes: int
    input_shape: tuple


# --------------------------------------------------------------------------- API


def load(
    name,
    split="train",
    batch_size=32,
    image_size=None,
    seed=0,
    data_dir=None,
    shuffle=None,
    drop_remainder=False,
    download=True,
):
    """Returns a batched ``tf.data.Dataset`` of ``(image, label)``.

    Args:
        name: ``"digits"`` or a tfds dataset name (``"cifar10"``, ...).
        split: one of ``SPLITS`` (see the module docstring).
        batch_size: examples per batch.
        image_size: ``None`` (native size), an int (square) or ``(height, width)``.
        seed: seed of the shuffle order (the splits themselves never change).
        data_dir: tfds data folder (ignored for ``"digits"``).
        shuffle: shuffle examples each epoch; default True for ``train`` and the
            search splits, False for ``validation`` and ``test``.
        drop_remainder: drop the last incomplete batch.
        download: for tfds, whether a missing dataset may be downloaded.

    Raises:
        ValueError: unknown dataset or split.
        DatasetUnavailableError: a tfds dataset is neither prepared nor
            downloadable.

    Example:
        >>> ds = load("digits", split="validation", batch_size=64, image_size=16)
        >>> next(iter(ds))[0].shape
        TensorShape([64, 16, 16, 1])
    """
    _check_split(split)
    checks.string("datasets.load", "name", name)
    checks.positive("datasets.load", "batch_size", batch_size, integer=True)
    _size_tuple(image_size, "datasets.load")
    checks.integer("datasets.load", "seed", seed)
    checks.boolean("datasets.load", "drop_remainder", drop_remainder)
    if shuffle is None:
        shuffle = split not in ("validation", "test")
    if name == "digits":
        x, y = _digits_split(split)
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        buffer = len(y)
    else:
        ds = _tfds_dataset(name, split, data_dir, download, image_size)
        buffer = 10_000
    if shuffle:
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(_preprocess_fn(image_size), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def search_pairs(name, batch_size=32, image_size=None, seed=0, data_dir=None, download=True):
    """Returns a dataset of ``((x_w, y_w), (x_a, y_a))`` pairs for bi-level search.

    Zips a batch of ``search_weights`` (for the weight step) with a batch of
    ``search_arch`` (for the architecture step, first-order DARTS). One pass
    covers the longer half once; the shorter half is repeated. Both halves are
    shuffled (with seeds ``seed`` and ``seed + 1``); incomplete last batches are
    dropped so every pair has two full batches.

    Example:
        >>> pairs = search_pairs("digits", batch_size=32)
        >>> (x_w, y_w), (x_a, y_a) = next(iter(pairs))
        >>> x_w.shape == x_a.shape
        True
    """
    checks.integer("datasets.search_pairs", "seed", seed)
    common = dict(batch_size=batch_size, image_size=image_size, data_dir=data_dir,
                  drop_remainder=True, download=download)
    weights = load(name, "search_weights", seed=seed, **common)
    arch = load(name, "search_arch", seed=seed + 1, **common)
    n_w = int(weights.cardinality())
    n_a = int(arch.cardinality())
    if n_w < 0 or n_a < 0:  # unknown length: one pass over the weight half
        return tf.data.Dataset.zip((weights, arch.repeat()))
    return tf.data.Dataset.zip((weights.repeat(), arch.repeat())).take(max(n_w, n_a))


def arrays(name, split="train", image_size=None, data_dir=None, limit=None, download=True):
    """Returns a split as numpy ``(x, y)``: float32 NHWC in [0, 1], int32 labels.

    Unshuffled, in the split's fixed order; ``limit`` keeps the first examples.
    Meant for small data (tests, calibration sets, digits).

    Example:
        >>> x, y = arrays("digits", "test")
        >>> x.shape, y.shape
        ((359, 8, 8, 1), (359,))
    """
    checks.integer("datasets.arrays", "limit", limit, low=1, none_ok=True)
    ds = load(name, split, batch_size=256, image_size=image_size, data_dir=data_dir,
              shuffle=False, download=download)
    if limit is not None:
        ds = ds.unbatch().take(limit).batch(256)
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def info(name, image_size=None, data_dir=None):
    """Returns the :class:`DatasetInfo` (classes, input shape) of a dataset.

    Needs no download for tfds datasets (reads the dataset's code metadata).

    Example:
        >>> info("digits", image_size=32).input_shape
        (32, 32, 1)
    """
    if name == "digits":
        shape = (8, 8, 1)
        num_classes = 10
    else:
        builder = _tfds_builder(name, data_dir)
        image_key, label_key = _supervised_keys(builder)
        shape = tuple(builder.info.features[image_key].shape)
        num_classes = builder.info.features[label_key].num_classes
    if image_size is not None:
        shape = _size_tuple(image_size, "datasets.info") + shape[2:]
    return DatasetInfo(name=name, num_classes=int(num_classes), input_shape=tuple(shape))


# ------------------------------------------------------------------ preprocessing


def _size_tuple(image_size, where="datasets"):
    """``(height, width)`` of an int or a pair of ints >= 1 (``None`` passes)."""
    if image_size is None:
        return None
    allowed = "None, an integer >= 1 or a (height, width) pair of them"
    if checks.is_number(image_size):
        size = checks.integer(where, "image_size", image_size, low=1, allowed=allowed)
        return (size, size)
    sizes = checks.sequence(where, "image_size", image_size, what=allowed)
    if len(sizes) != 2:
        checks.fail(where, "image_size", image_size, allowed)
    return tuple(checks.integer(where, "image_size", s, low=1, allowed=allowed) for s in sizes)


def _preprocess_fn(image_size):
    """Maps (image, label) to (float32 image in [0, 1], optionally resized, int32 label)."""
    size = None if image_size is None else _size_tuple(image_size)

    def preprocess(image, label):
        if image.dtype == tf.uint8:
            image = tf.cast(image, tf.float32) / 255.0
        image = tf.cast(image, tf.float32)
        if size is not None:
            image = tf.image.resize(image, size, method="bilinear")
        return image, tf.cast(label, tf.int32)

    return preprocess


def _check_split(split):
    checks.choice("datasets", "split", split, SPLITS)


def _unknown_name_error(name):
    return ValueError(
        f"datasets: unknown dataset name {name!r}; allowed: {', '.join(map(repr, BUILTIN))} "
        "(bundled, offline) or any TensorFlow Datasets image-classification name such as "
        "'cifar10' or 'mnist' (see tfds.list_builders())."
    )


# ------------------------------------------------------------------------ digits


def _digits_split(split):
    """Returns the float32 NHWC images in [0, 1] and int32 labels of a digits split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    order = np.random.RandomState(_DIGITS_SPLIT_SEED).permutation(len(y))
    n_test = int(round(_DIGITS_TEST_FRACTION * len(y)))
    n_val = int(round(_DIGITS_VALIDATION_FRACTION * len(y)))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    half = len(train) // 2
    index = {
        "train": train,
        "validation": val,
        "test": test,
        "search_weights": train[:half],
        "search_arch": train[half:],
    }[split]
    return x[index], y[index]


# -------------------------------------------------------------------------- tfds


def _import_tfds():
    import tensorflow_datasets as tfds

    return tfds


def _tfds_builder(name, data_dir):
    """Returns the tfds builder of ``name`` or raises the unknown-name ValueError."""
    tfds = _import_tfds()
    not_found = getattr(tfds.core.registered, "DatasetNotFoundError", ValueError)
    try:
        return tfds.builder(name, data_dir=data_dir)
    except not_found as e:
        raise _unknown_name_error(name) from e


def _unavailable(name, data_dir, cause):
    where = data_dir or "the default tfds folder (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    return DatasetUnavailableError(
        f"Dataset {name!r} is not prepared in {where} and could not be downloaded "
        f"({cause}). Ways out: (1) prepare it on a machine with internet access "
        f"(`tfds build {name} --data_dir=DIR` or tfds.load({name!r}, data_dir=DIR)), "
        "copy DIR here and pass data_dir=DIR; or (2) use the bundled offline "
        "dataset: load('digits', ...)."
    )


def _prepared_builder(name, data_dir, download):
    """Returns a builder whose data is on disk, downloading it if allowed."""
    builder = _tfds_builder(name, data_dir)
    if builder.is_prepared():
        return builder
    if not download:
        raise _unavailable(name, data_dir, "download=False")
    try:
        builder.download_and_prepare()
    except Exception as e:  # no network, blocked URL, manual download needed, ...
        raise _unavailable(name, data_dir, f"{type(e).__name__}: {e}") from e
    return builder


def _supervised_keys(builder):
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2:
        raise ValueError(
            f"tfds dataset {builder.name!r} has no (image, label) supervised keys; "
            "only image-classification datasets are supported."
        )
    return keys


def _tfds_split_names(available):
    """Maps our splits to tfds split strings, given the tfds splits that exist."""
    if "validation" in available and "test" in available:
        train, val, test, percent = "train", "validation", "test", 100
    elif "test" in available:
        train, val, test, percent = "train[:90%]", "train[90%:]", "test", 90
    elif "validation" in available:
        train, val, test, percent = "train[:90%]", "train[90%:]", "validation", 90
    else:
        train, val, test, percent = "train[:80%]", "train[80%:90%]", "train[90%:]", 80
    half = percent // 2
    return {
        "train": train,
        "validation": val,
        "test": test,
        "search_weights": f"train[:{half}%]",
        "search_arch": f"train[{half}%:{percent}%]",
    }


def _tfds_dataset(name, split, data_dir, download, image_size):
    """Returns the unbatched (image, label) tfds dataset of one of our splits."""
    builder = _prepared_builder(name, data_dir, download)
    image_key, _ = _supervised_keys(builder)
    shape = builder.info.features[image_key].shape
    if image_size is None and None in tuple(shape)[:2]:
        raise ValueError(
            f"Images of tfds dataset {name!r} vary in size (shape {shape}); pass "
            "image_size=(height, width) so they can be batched."
        )
    # Before preparation (or under tfds.testing.mock_data) the split list may be
    # empty; the tfds convention train + test is then assumed.
    available = set(builder.info.splits.keys()) or {"train", "test"}
    tfds_split = _tfds_split_names(available)[split]
    return builder.as_dataset(split=tfds_split, as_supervised=True, shuffle_files=False)


__all__ = [
    "BUILTIN",
    "SPLITS",
    "DatasetInfo",
    "DatasetUnavailableError",
    "arrays",
    "info",
    "load",
    "search_pairs",
]
