"""Progress of the long waits a search has: one reporter for all of them.

A search sits silent where TensorFlow builds the training graph (tens of
seconds before the first step of a bi-level supernet), and a sweep or a
lambda sweep runs for minutes. Keras' own ``fit`` progress bar covers the
epochs once they run; this module covers the rest, in plain lines (a line per
event, so it reads the same in a terminal, a log file and a notebook):

* ``FirstStep``: a Keras callback that says ``building the search graph ...``
  when ``fit`` starts and ``first step after 12.3 s`` once the first batch has
  run. ``SearchModel.fit`` adds it when ``verbose`` is on.
* ``phase(text)``: a context manager around one long phase (retraining, an
  export): ``retraining the child ...`` then ``retraining the child: 8.1 s``.
* ``Counter(total, label)``: numbered items with an estimate of what is left:
  ``[trial 2/4] darts budget 0.25 ...`` and ``[trial 2/4] done in 41 s; about
  82 s left`` (the mean of the finished items times those left).

Every line goes to ``stream`` (default ``sys.stdout``) and is flushed at once.

Example:
    >>> with phase("retraining the child", stream=sys.stdout, clock=iter([0.0, 2.5]).__next__):
    ...     pass
    retraining the child ...
    retraining the child: 2.5 s
    >>> steps = Counter(2, "trial", clock=iter([0.0, 10.0, 10.0, 30.0]).__next__)
    >>> steps.begin("darts budget 0.5")
    [trial 1/2] darts budget 0.5 ...
    >>> steps.end()
    [trial 1/2] done in 10 s; about 10 s left
    >>> steps.begin("figs budget 0.5")
    [trial 2/2] figs budget 0.5 ...
    >>> steps.end()
    [trial 2/2] done in 20 s
"""

import contextlib
import sys
import time

from searchlayers._keras import keras, register


def _say(text, stream=None):
    print(text, file=stream or sys.stdout, flush=True)


@contextlib.contextmanager
def phase(text, stream=None, clock=time.perf_counter):
    """Prints ``text ...`` before the block and ``text: 2.5 s`` after it.

    Example:
        >>> with phase("exporting", clock=iter([1.0, 1.5]).__next__):
        ...     pass
        exporting ...
        exporting: 0.5 s
    """
    _say(f"{text} ...", stream)
    start = clock()
    yield
    _say(f"{text}: {clock() - start:.1f} s", stream)


class Counter:
    """Numbered items (trials, lambda points) with the time left estimated from
    the mean time of the finished ones (see the module docstring).

    Args:
        total: number of items, or None when unknown (then no estimate).
        label: the word in the brackets (``trial``, ``lambda``).
        stream: where the lines go (default ``sys.stdout``).
        clock: a seconds clock (``time.perf_counter``).

    Example:
        >>> c = Counter(None, "lambda", clock=iter([0.0, 3.0]).__next__)
        >>> c.begin("dst_lambda=0.2")
        [lambda 1] dst_lambda=0.2 ...
        >>> c.end()
        [lambda 1] done in 3 s
    """

    def __init__(self, total=None, label="trial", stream=None, clock=time.perf_counter):
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)
                                  or total < 1):
            raise ValueError(f"progress.Counter: total must be an integer >= 1 or None, got "
                             f"{total!r}.")
        self.total, self.label, self.stream, self.clock = total, label, stream, clock
        self.done, self.seconds, self._start = 0, 0.0, None

    def _tag(self, index):
        of = f"/{self.total}" if self.total else ""
        return f"[{self.label} {index}{of}]"

    def begin(self, text):
        """Announces the next item."""
        _say(f"{self._tag(self.done + 1)} {text} ...", self.stream)
        self._start = self.clock()

    def end(self):
        """Reports the item's time and, when the total is known, the time left."""
        seconds = self.clock() - self._start
        self.done += 1
        self.seconds += seconds
        left = ""
        if self.total and self.total > self.done:
            left = f"; about {self.seconds / self.done * (self.total - self.done):.0f} s left"
        _say(f"{self._tag(self.done)} done in {seconds:.0f} s{left}", self.stream)


@register
class FirstStep(keras.callbacks.Callback):
    """Says what ``fit`` is doing before its first step: building (tracing) the
    training graph, which takes from a second to minutes for a supernet, and
    how long it took once the first batch has run.

    Args:
        text: what is being built (default ``"building the search graph"``).
        stream: where the lines go (default ``sys.stdout``).

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> m.compile("sgd", "mse")
        >>> _ = m.fit(np.ones((4, 2)), np.ones(4), verbose=0, callbacks=[
        ...     FirstStep("building the training graph")])  # doctest: +ELLIPSIS
        building the training graph (tracing the training step) ...
        first step after ... s
    """

    def __init__(self, text="building the search graph", stream=None):
        super().__init__()
        self.text, self.stream = text, stream
        self._start = None

    def on_train_begin(self, logs=None):
        _say(f"{self.text} (tracing the training step) ...", self.stream)
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._start is not None:
            _say(f"first step after {time.perf_counter() - self._start:.1f} s", self.stream)
            self._start = None

    def get_config(self):
        return dict(text=self.text)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["Counter", "FirstStep", "phase"]
