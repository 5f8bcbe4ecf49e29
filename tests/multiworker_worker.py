"""One worker of tests/test_multiworker.py: searches four tiny supernets and
records their state after every epoch.

Run by ``searchlayers.launch`` (``TF_CONFIG`` set: ``MultiWorkerMirroredStrategy``
over the workers) or alone (no strategy: the single-process reference on the
same global batches). Supernets, in order (each from ``set_random_seed(0)``):

* ``darts``: ``models.darts`` cell space, Gumbel edges, bi-level, temperature
  schedule and entropy term;
* ``figs``: FiGS masks (logistic noise) inserted into a small ResNet, joint;
* ``bars``: ``models.bars`` binary space with depth and width gates, bi-level,
  BARS' callbacks (warm-up, entropy schedule, temperature schedule);
* ``bnnas``: single-path (uniform) supernet, BatchNorm only, ``BNScoreEvaluator``.

BatchNormalization is synchronized (global-batch statistics), so the searches
are the single-process searches up to float rounding; except inside the
single-path candidates of ``bnnas`` (see ``sync_batchnorm``), whose workers
agree with each other but normalize with their own half batch. Every search has a
``BackupAndRestore`` in ``--out/backup/<name>`` and an ``ArchitectureLogger`` in
``--out/logs/task<i>/<name>`` (only the chief's folder may appear).

Writes ``--out/state_<task>.json``: ``{name: [state after epoch e, ...]}``
after every epoch (a restarted worker reads it back). With ``--kill_epoch=E``
worker 1 kills itself (SIGKILL) in the middle of epoch E of the first model on
the launcher's first attempt; the launcher restarts both workers and the first
model resumes from its ``BackupAndRestore`` backup.
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from searchlayers import launch  # noqa: E402

STRATEGY = launch.strategy_from_env()  # before any other TensorFlow op

import tensorflow as tf  # noqa: E402

import searchlayers as sl  # noqa: E402
from searchlayers import bn_score, datasets, transforms  # noqa: E402
from searchlayers.layers.base import search_layers  # noqa: E402

K = sl.keras
LOSS = K.losses.SparseCategoricalCrossentropy(from_logits=True)
BATCH, EXAMPLES = 16, 64  # global batch; 4 steps per epoch


def task_index():
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    return config.get("task", {}).get("index") if config else None


def sync_batchnorm(model):
    """Global-batch BN statistics (all-reduced across replicas and workers), but
    not inside single-path candidates: an all-reduce cannot sit in the branch of
    their ``tf.switch_case``, so those keep each worker's own statistics."""
    branches = {id(sub) for layer in search_layers(model)
                if getattr(layer, "mode", None) in ("uniform", "fair", "gumbel_hard")
                for sub in layer._flatten_layers(include_self=False, recursive=True)}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, K.layers.BatchNormalization) and id(layer) not in branches:
            layer.synchronized, layer.fused = True, False


def data(bilevel):
    x, y = datasets.arrays("digits", "train", limit=2 * EXAMPLES)
    train = tf.data.Dataset.from_tensor_slices((x[:EXAMPLES], y[:EXAMPLES])).batch(BATCH)
    if not bilevel:
        return train
    val = tf.data.Dataset.from_tensor_slices((x[EXAMPLES:], y[EXAMPLES:])).batch(BATCH)
    return tf.data.Dataset.zip((train, val))


def darts():
    from models.darts import darts_supernet

    net = darts_supernet((8, 8, 1), 10, channels=4, cells=1, steps=1, multiplier=1,
                         ops=["none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"],
                         mode="gumbel")
    callbacks = [sl.TemperatureScheduler("exponential", start=1.0, rate=0.7),
                 sl.EntropyRegularizer(start=0.01)]
    return net, True, callbacks


def figs():
    from models.figs import resnet

    net = transforms.insert_masks(resnet((8, 8, 1), 10, stages=((4, 1, 1),), stem=4),
                                  temperature=0.5)
    return net, False, [sl.TemperatureScheduler("constant", start=0.5)]


def bars():
    from models import bars

    net = bars.bars_supernet((8, 8, 1), 10, channels=4, stages=1, cells=1, steps=1)
    return net, True, bars.search_callbacks(3, warmup=1)


def bnnas():
    from models.spos import spos_supernet

    net = spos_supernet(stages=((4, 2, 1),), stem_channels=4, head_channels=8,
                        ops=["mb_k3_e3", "mb_k5_e3"])
    transforms.train_only_batchnorm(net)
    return net, False, []


BUILDERS = {"darts": darts, "figs": figs, "bars": bars, "bnnas": bnnas}


def _digest(variables):
    return hashlib.sha256(b"".join(v.numpy().tobytes() for v in variables)).hexdigest()


def state(net):
    """Everything that must agree across workers (floats round-trip exactly in JSON)."""
    layers = search_layers(net)
    out = {
        "arch": {v.name: v.numpy().ravel().tolist() for v in sl.arch_variables(net)},
        "temperature": {l.name: float(l.temperature.numpy()) for l in layers},
        "sample_step": {l.name: int(l.sample_step.numpy()) for l in layers},
        "probabilities": {l.name: l.probabilities().numpy().ravel().tolist() for l in layers},
        "weights_sha256": _digest(sl.weight_variables(net)),
    }
    try:
        out["bn_scores"] = {k: [None if s != s else float(s) for s in v]
                            for k, v in bn_score.bn_scores(net).items()}
    except ValueError:  # no BN-ended candidates
        pass
    return out


class Record(K.callbacks.Callback):
    """Appends the state after each epoch to ``results[name]`` and rewrites the
    task's state file, so a restarted worker keeps the epochs it recorded
    before it was killed (each state names the launcher attempt that made it)."""

    def __init__(self, net, name, results, path):
        super().__init__()
        self.net, self.name, self.results, self.path = net, name, results, path

    def on_epoch_end(self, epoch, logs=None):
        states = self.results.setdefault(self.name, [])
        del states[epoch:]
        states.extend([None] * (epoch - len(states)))
        states.append({**state(self.net), "attempt": os.environ.get(launch.ATTEMPT)})
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.results, f)
        os.replace(self.path + ".tmp", self.path)


class KillOnce(K.callbacks.Callback):
    """SIGKILLs worker 1 at batch 2 of ``epoch`` on the launcher's first attempt."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.current == self.epoch and batch == 2 and task_index() == 1
                and os.environ.get(launch.ATTEMPT) == "0"):
            os.kill(os.getpid(), signal.SIGKILL)


def task_name():
    return "single" if task_index() is None else f"task{task_index()}"


def search(name, args, results, kill_epoch=None):
    K.utils.set_random_seed(0)
    scope = STRATEGY.scope() if STRATEGY else tf.distribute.get_strategy().scope()
    with scope:
        net, bilevel, callbacks = BUILDERS[name]()
        sync_batchnorm(net)
        if sl.arch_variables(net):
            model = sl.SearchModel(net, bilevel=bilevel, arch_optimizer=K.optimizers.Adam(0.05))
        else:  # single path without logits: the model's own fit samples the paths
            model = net
        model.compile(K.optimizers.SGD(0.05, momentum=0.9), LOSS)
    logs = os.path.join(args.out, "logs", task_name(), name)
    path = os.path.join(args.out, f"state_{task_name()}.json")
    callbacks = [*callbacks, Record(net, name, results, path), sl.ArchitectureLogger(logs),
                 K.callbacks.BackupAndRestore(os.path.join(args.out, "backup", name))]
    if name == "bnnas":
        callbacks.append(sl.BNScoreEvaluator(logs))
    if kill_epoch is not None:
        callbacks.append(KillOnce(kill_epoch))
    model.fit(data(bilevel), epochs=args.epochs, verbose=0, callbacks=callbacks)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default="darts,figs,bars,bnnas")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kill_epoch", type=int, default=None,
                        help="worker 1 dies in this epoch of the first model (first attempt)")
    args = parser.parse_args()
    path = os.path.join(args.out, f"state_{task_name()}.json")
    results = {}
    if os.path.exists(path):  # restarted: the epochs recorded before the kill
        with open(path) as f:
            results = json.load(f)
    for i, name in enumerate(args.models.split(",")):
        start = time.process_time()
        search(name, args, results, args.kill_epoch if i == 0 else None)
        print(f"{name}: {time.process_time() - start:.1f} s of CPU", flush=True)
    print(f"{task_name()} done")


if __name__ == "__main__":
    main()
