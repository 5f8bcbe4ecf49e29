"""``BNScoreEvaluator``: BN-NAS' op scores, their ranks and the rank stability
per epoch (the early-bird signal), with early stopping and the similarity figure.

Example:
    >>> BNScoreEvaluator("/tmp/bn").json_path
    '/tmp/bn/bn_scores.json'
"""

import json
import numbers
import os

import numpy as np

from searchlayers import bn_score
from searchlayers._keras import keras, register
from searchlayers.callbacks._common import writes_files


@register
class BNScoreEvaluator(keras.callbacks.Callback):
    """BN-NAS: the BN indicator of every candidate op, epoch by epoch.

    At the end of every epoch it reads each search layer's op scores
    (``searchlayers.bn_score.bn_scores``: ``mean |gamma|`` of each candidate's
    last BatchNorm), ranks the candidates per layer (0 = best), and measures the
    normalized L2 distance between this epoch's ranks and the previous epoch's
    (``bn_score.rank_distance``; 0 = same ranking): the early-bird signal of the
    paper (sec. 3.4.1). ``logs["bn_rank_distance"]`` carries it (NaN at the
    first epoch).

    With ``patience`` it stops training once the distance has stayed
    ``<= tolerance`` for ``patience`` consecutive epochs (not before
    ``min_epochs`` epochs). With ``log_dir`` it writes ``json_name`` (the
    history) every epoch and, at train end, ``png_name``: the epoch-by-epoch
    rank similarity matrix (paper Fig. 4; ``1 - distance / max distance``).

    ``history`` is a list of ``{"epoch", "scores": {layer: [...]}, "ranks":
    {layer: [...]}, "distance"}``; ``scores()`` gives the latest op scores.
    With ``append=True`` a run that resumes (``initial_epoch``, e.g. after
    ``BackupAndRestore``) first reads the history back from ``json_name``, so
    distances and the stable-epoch count continue across the restart.

    Example:
        >>> cb = BNScoreEvaluator("/tmp/bn", patience=2)
        >>> model.fit(ds, epochs=10, callbacks=[cb])  # doctest: +SKIP
        >>> cb.history[-1]["distance"]  # doctest: +SKIP
        0.0
    """

    def __init__(self, log_dir=None, patience=None, tolerance=0.0, min_epochs=0,
                 json_name="bn_scores.json", png_name="bn_rank_similarity.png", append=False):
        super().__init__()
        where = "BNScoreEvaluator"
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int)
                                     or patience < 1):
            raise ValueError(f"{where}: patience must be an integer >= 1 or None, got {patience!r}.")
        if (isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real)
                or not 0.0 <= float(tolerance) <= 1.0):
            raise ValueError(f"{where}: tolerance must be a number in [0, 1], got {tolerance!r}.")
        if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 0:
            raise ValueError(f"{where}: min_epochs must be an integer >= 0, got {min_epochs!r}.")
        if append and log_dir is None:
            raise ValueError(f"{where}: append=True reads the history from log_dir; give a log_dir.")
        self.log_dir = None if log_dir is None else str(log_dir)
        self.patience, self.tolerance, self.min_epochs = patience, float(tolerance), int(min_epochs)
        self.json_name, self.png_name, self.append = json_name, png_name, bool(append)
        self.history = []
        self.stopped_epoch = None
        self._chief = True

    @property
    def json_path(self):
        """Path of the JSON history (None without ``log_dir``)."""
        return None if self.log_dir is None else os.path.join(self.log_dir, self.json_name)

    @property
    def png_path(self):
        """Path of the similarity figure (None without ``log_dir``)."""
        return None if self.log_dir is None else os.path.join(self.log_dir, self.png_name)

    def scores(self):
        """``{layer: np.ndarray}`` op scores of the model now."""
        return bn_score.bn_scores(self.model)

    def on_train_begin(self, logs=None):
        scores = self.scores()  # a model without MixedOps fails now, with the layer named
        if not any(np.isfinite(s).sum() >= 2 for s in scores.values()):
            raise ValueError(
                f"BNScoreEvaluator: no search layer of model '{self.model.name}' has two "
                f"candidates with a BatchNorm score ({ {k: s.tolist() for k, s in scores.items()} }); "
                "nothing can be ranked. Allowed: MixedOps whose candidate ops end with an "
                "affine BatchNormalization (see searchlayers.bn_score.op_score)."
            )
        self._chief = writes_files(self.model)
        if self.log_dir is not None and self._chief:
            os.makedirs(self.log_dir, exist_ok=True)
        self.history, self.stopped_epoch = [], None
        if self.append and os.path.exists(self.json_path):
            with open(self.json_path) as f:
                self.history = json.load(f)

    def stable_epochs(self):
        """Consecutive latest epochs whose rank distance was ``<= tolerance``."""
        count = 0
        for h in reversed(self.history):
            if h["distance"] is None or h["distance"] > self.tolerance:
                break
            count += 1
        return count

    def on_epoch_end(self, epoch, logs=None):
        self.history = [h for h in self.history if h["epoch"] < epoch]  # a re-run epoch
        scores = self.scores()
        ranking = bn_score.ranks(scores, missing=-np.inf)  # a candidate without BN: last
        distance = None
        if self.history:
            distance = bn_score.rank_distance(self.history[-1]["ranks"], ranking)
        self.history.append({
            "epoch": int(epoch),
            "scores": {k: [None if v != v else float(v) for v in s] for k, s in scores.items()},
            "ranks": {k: r.tolist() for k, r in ranking.items()},
            "distance": distance,
        })
        if logs is not None:
            logs["bn_rank_distance"] = float("nan") if distance is None else distance
        if (self.patience is not None and self.stable_epochs() >= self.patience
                and epoch + 1 >= self.min_epochs):
            self.stopped_epoch = int(epoch)
            self.model.stop_training = True
        if self.json_path is not None and self._chief:
            with open(self.json_path, "w") as f:
                json.dump(self.history, f, indent=1)

    def similarity(self):
        """``[epochs, epochs]`` rank similarity in [0, 1] (paper Fig. 4), 1 on the diagonal."""
        n = len(self.history)
        dist = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                d = bn_score.rank_distance(self.history[i]["ranks"], self.history[j]["ranks"])
                dist[i, j] = dist[j, i] = d
        top = dist.max() if n else 0.0
        return 1.0 - dist / top if top > 0 else np.ones((n, n))

    def plot(self, path=None):
        """Draws the similarity matrix to ``path`` (default ``png_path``); returns the path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = path or self.png_path
        if path is None:
            raise ValueError("BNScoreEvaluator.plot: give a path (or log_dir at construction).")
        epochs = [h["epoch"] for h in self.history]
        fig = Figure(figsize=(5, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        image = ax.imshow(self.similarity(), cmap="Blues", vmin=0.0, vmax=1.0, origin="lower",
                          extent=(epochs[0] - 0.5, epochs[-1] + 0.5, epochs[0] - 0.5, epochs[-1] + 0.5))
        fig.colorbar(image, ax=ax, label="rank similarity")
        ax.set_xlabel("epoch")
        ax.set_ylabel("epoch")
        ax.set_title("BN-indicator rank similarity")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return path

    def on_train_end(self, logs=None):
        if self.history and self.png_path is not None and self._chief:
            self.plot()

    def get_config(self):
        return dict(log_dir=self.log_dir, patience=self.patience, tolerance=self.tolerance,
                    min_epochs=self.min_epochs, json_name=self.json_name, png_name=self.png_name,
                    append=self.append)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["BNScoreEvaluator"]
