"""``ArchitectureLogger``: the architecture distributions of every epoch, and how
decided each group is, to CSV, TensorBoard scalars and a PNG (BARS Fig. 5).

Example:
    >>> ArchitectureLogger("logs").csv_path
    'logs/architecture.csv'
"""

import csv
import math
import os

import tensorflow as tf

from searchlayers import checks, decision
from searchlayers import regularizers as reg
from searchlayers._keras import keras, register
from searchlayers.callbacks._common import require_search_layers, writes_files


def _labels(layer, count):
    """A name for each of ``count`` probabilities of ``layer``."""
    names = list(getattr(layer, "choice_names", None) or [])
    if len(names) == count:
        return names
    if names and count % len(names) == 0:  # [rows, choices]
        return [f"{i // len(names)}/{names[i % len(names)]}" for i in range(count)]
    return [str(i) for i in range(count)]


def _scalar(tag, value, step):
    """``tf.summary.scalar`` without needing the tensorboard package installed."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata)


_DECISION_COLUMNS = ("entropy", "max_prob", "flips", "decided")


@register
class ArchitectureLogger(keras.callbacks.Callback):
    """Records the architecture distributions at the end of every epoch.

    Writes ``log_dir/<csv_name>`` (columns epoch, key, choice, probability;
    one group per ``arch_key``, or layer name without a key), TensorBoard
    scalars ``architecture/<key>/<choice>`` to ``log_dir``, and at train end
    ``log_dir/<png_name>``: one subplot per group, each choice's probability
    against the epoch (BARS Fig. 5). ``history`` is
    ``{epoch: {key: {choice: probability}}}``. With ``append=True`` an
    existing CSV is read first (e.g. a search resumed by BackupAndRestore).

    How decided each group is (``searchlayers.decision.layer_decision``:
    normalized entropy, largest probability, argmax flips when a
    ``DecisionTracker`` runs, decided) goes to ``log_dir/<decision_name>``
    (columns epoch, key, entropy, max_prob, flips, decided), TensorBoard
    scalars ``decision/<key>/<metric>`` and the subplot titles; ``decisions``
    is ``{epoch: {key: metrics}}``.

    Example:
        >>> logger = ArchitectureLogger("/tmp/arch")
        >>> model.fit(x, y, epochs=5, callbacks=[logger])  # doctest: +SKIP
        >>> logger.history[4]["edge"]["skip_connect"]  # doctest: +SKIP
        0.21
    """

    def __init__(self, log_dir, csv_name="architecture.csv", png_name="architecture.png",
                 tensorboard=True, append=False, decision_name="decision.csv"):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise checks.ArgumentTypeError(
                f"ArchitectureLogger: log_dir must be a folder path, got "
                f"{checks.show(log_dir)} ({type(log_dir).__name__}).")
        self.log_dir, self.csv_name, self.png_name = str(log_dir), csv_name, png_name
        self.tensorboard = checks.boolean("ArchitectureLogger", "tensorboard", tensorboard)
        self.append = checks.boolean("ArchitectureLogger", "append", append)
        self.decision_name = decision_name
        self.history, self.decisions = {}, {}
        self._writer = None
        self._chief = True

    @property
    def csv_path(self):
        """Path of the CSV file.

        Example:
            >>> ArchitectureLogger("logs").csv_path
            'logs/architecture.csv'
        """
        return os.path.join(self.log_dir, self.csv_name)

    @property
    def png_path(self):
        """Path of the PNG figure.

        Example:
            >>> ArchitectureLogger("logs").png_path
            'logs/architecture.png'
        """
        return os.path.join(self.log_dir, self.png_name)

    def distributions(self):
        """``{key: {choice: probability}}`` of the model now.

        Example:
            >>> ArchitectureLogger("logs").distributions()  # doctest: +SKIP
        """
        out = {}
        for key, layer in reg.arch_groups(self.model).items():
            probs = tf.reshape(layer.probabilities(), [-1]).numpy().tolist()
            out[key] = dict(zip(_labels(layer, len(probs)), probs))
        return out

    def on_train_begin(self, logs=None):
        self._chief = writes_files(self.model)
        if self._chief:
            os.makedirs(self.log_dir, exist_ok=True)
        require_search_layers(self.model, "ArchitectureLogger")
        self.history = self._read_csv() if self.append else {}
        if self.tensorboard and self._writer is None and self._chief:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        self.history[epoch] = self.distributions()
        self.decisions[epoch] = {
            key: {m: d[m] for m in _DECISION_COLUMNS}
            for key, d in decision.model_decision(self.model).items()
        }
        if self._chief:
            self._write_csv()
        if self._writer is not None:
            with self._writer.as_default():
                for key, probs in self.history[epoch].items():
                    for choice, p in probs.items():
                        _scalar(f"architecture/{key}/{choice}", p, epoch)
                for key, d in self.decisions[epoch].items():
                    for m in ("entropy", "max_prob", "flips"):
                        if d[m] is not None:
                            _scalar(f"decision/{key}/{m}", d[m], epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self.history and self._chief:
            self.plot()

    def _write_csv(self):
        with open(self.csv_path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["epoch", "key", "choice", "probability"])
            for epoch in sorted(self.history):
                for key, probs in self.history[epoch].items():
                    for choice, p in probs.items():
                        out.writerow([epoch, key, choice, f"{p:.6g}"])
        with open(os.path.join(self.log_dir, self.decision_name), "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["epoch", "key", *_DECISION_COLUMNS])
            for epoch in sorted(self.decisions):
                for key, d in self.decisions[epoch].items():
                    out.writerow([epoch, key, *("" if d[m] is None else f"{d[m]:.6g}"
                                                for m in _DECISION_COLUMNS)])

    def _read_csv(self):
        history = {}
        if not os.path.exists(self.csv_path):
            return history
        with open(self.csv_path, newline="") as f:
            for row in csv.DictReader(f):
                group = history.setdefault(int(row["epoch"]), {}).setdefault(row["key"], {})
                group[row["choice"]] = float(row["probability"])
        return history

    def load(self):
        """Reads ``csv_path`` (a finished search's log) into ``history``; returns it.

        Example:
            >>> logger = ArchitectureLogger("logs")
            >>> logger.load()  # doctest: +SKIP
            {0: {'edge': {'skip_connect': 0.2, ...}}, ...}
        """
        self.history = self._read_csv()
        return self.history

    def plot(self, path=None):
        """Draws ``history`` (BARS Fig. 5 style) to ``path`` (default ``png_path``).

        Example:
            >>> logger.plot()  # doctest: +SKIP
            'logs/architecture.png'
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = path or self.png_path
        epochs = sorted(self.history)
        keys = list(self.history[epochs[-1]])
        cols = max(min(len(keys), 3), 1)  # no groups (single path): an empty figure
        rows = max(math.ceil(len(keys) / cols), 1)  # an empty figure has a size too
        fig = Figure(figsize=(4.5 * cols, 3.2 * rows))
        FigureCanvasAgg(fig)
        for i, key in enumerate(keys):
            ax = fig.add_subplot(rows, cols, i + 1)
            for choice in self.history[epochs[-1]][key]:
                ys = [self.history[e].get(key, {}).get(choice, float("nan")) for e in epochs]
                ax.plot(epochs, ys, marker="o", markersize=3, label=choice)
            d = self.decisions.get(epochs[-1], {}).get(key)
            ax.set_title(key if d is None else f"{key}: max p {d['max_prob']:.2f}, "
                         f"H {d['entropy']:.2f}{'' if d['decided'] else ' (undecided)'}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("probability")
            ax.set_ylim(0.0, 1.0)
            if len(self.history[epochs[-1]][key]) <= 12:  # not one entry per channel
                ax.legend(fontsize="x-small")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return path

    def get_config(self):
        return dict(log_dir=self.log_dir, csv_name=self.csv_name, png_name=self.png_name,
                    tensorboard=self.tensorboard, append=self.append,
                    decision_name=self.decision_name)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["ArchitectureLogger"]
