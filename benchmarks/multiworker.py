"""Multi-worker search speed: steps per second of 1 vs 2 worker processes.

A DARTS search (``models.darts``, bi-level ``SearchModel``) on digits with the
same global batch runs under ``MultiWorkerMirroredStrategy`` with 1 and then 2
local workers (``searchlayers.launch``, loopback), in alternating rounds.
Each worker times its search steps after a traced warm-up epoch and, after the
search, the all-reduce alone: one ``all_reduce`` of tensors shaped like the
architecture gradients and one like the weight gradients (what a bi-level step
reduces). ``allreduce_share`` = all-reduce time per step / step time.

Both workers share this machine's cores, so 2 workers cannot be faster than
the cores allow; the figure shows the overhead of the collective path, not
the speed-up of a cluster.

Writes ``benchmarks/results/multiworker.json`` and prints a table.

Example:
    python -m benchmarks.multiworker --rounds=1 --steps=10 --epochs=2  # ~6 min on 2 cores
"""

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(args):
    """One worker process: times the search steps and the all-reduce."""
    from searchlayers import launch

    strategy = launch.strategy_from_env()  # before other TensorFlow ops
    import tensorflow as tf

    import searchlayers as sl
    from searchlayers import datasets
    from models.darts import darts_supernet

    K = sl.keras
    sl.keras.utils.set_random_seed(0)
    with strategy.scope():
        net = darts_supernet((8, 8, 1), 10, channels=args.channels, cells=3, steps=2,
                             multiplier=2)
        model = sl.SearchModel(net, arch_optimizer=K.optimizers.Adam(3e-3))
        model.compile(K.optimizers.SGD(0.05, momentum=0.9),
                      K.losses.SparseCategoricalCrossentropy(from_logits=True))
    times = []

    class Clock(K.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    pairs = datasets.search_pairs("digits", args.batch).repeat()
    model.fit(pairs, epochs=args.epochs + 1, steps_per_epoch=args.steps, verbose=0,
              callbacks=[Clock()])
    step_s = statistics.median(times[1:]) / args.steps  # epoch 0 traces

    shapes = [[v.shape for v in sl.arch_variables(net)], [v.shape for v in sl.weight_variables(net)]]

    @tf.function
    def reduce_all():
        def fn():
            ctx = tf.distribute.get_replica_context()
            return [ctx.all_reduce("SUM", [tf.ones(s) for s in group]) for group in shapes]
        return strategy.run(fn)

    reduce_all()
    start = time.perf_counter()
    for _ in range(args.steps):
        out = reduce_all()
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t,
                          strategy.experimental_local_results(out))
    allreduce_s = (time.perf_counter() - start) / args.steps
    if launch.is_chief(strategy):
        with open(args.result, "w") as f:
            json.dump({"workers": strategy.num_replicas_in_sync, "step_s": step_s,
                       "steps_per_s": 1.0 / step_s, "allreduce_s": allreduce_s,
                       "allreduce_share": allreduce_s / step_s}, f)


def run(workers, args):
    from searchlayers import launch

    with tempfile.TemporaryDirectory() as folder:
        result = os.path.join(folder, "result.json")
        command = [sys.executable, "-m", "benchmarks.multiworker", "--worker",
                   f"--result={result}", f"--steps={args.steps}", f"--epochs={args.epochs}",
                   f"--batch={args.batch}", f"--channels={args.channels}"]
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=ROOT)
        log = io.StringIO()
        status = launch.launch(command, workers=workers, timeout=600, env=env, output=log)
        if status != 0:
            raise RuntimeError(f"benchmarks.multiworker: {workers} workers exited {status}:\n"
                               f"{log.getvalue()[-3000:]}")
        with open(result) as f:
            return json.load(f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--result")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up)")
    parser.add_argument("--batch", type=int, default=64, help="global batch (each half of a pair)")
    parser.add_argument("--channels", type=int, default=8)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from benchmarks.common import RESULTS, table

    rounds = {1: [], 2: []}
    for r in range(args.rounds):  # alternating, so load changes hit both alike
        for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
            rounds[workers].append(run(workers, args))
            print(f"round {r}: {workers} worker(s) {rounds[workers][-1]['steps_per_s']:.2f} steps/s",
                  flush=True)
    summary = {}
    for workers, results in rounds.items():
        summary[workers] = {k: statistics.median(r[k] for r in results)
                            for k in ("steps_per_s", "step_s", "allreduce_s", "allreduce_share")}
    speedups = [b["steps_per_s"] / a["steps_per_s"] for a, b in zip(rounds[1], rounds[2])]
    out = {
        "setup": {"model": f"darts_supernet C={args.channels}, 3 cells, 2 nodes, bi-level",
                  "global_batch": args.batch, "timed_steps": args.steps * args.epochs,
                  "cpus": os.cpu_count(), "transport": "gRPC on 127.0.0.1, RING collectives",
                  "load_average_1_5_15min_at_end": list(os.getloadavg())},
        "rounds": {str(k): v for k, v in rounds.items()},
        "median": {str(k): v for k, v in summary.items()},
        "speedup_2_vs_1": statistics.median(speedups),
        "speedups_per_round": speedups,
    }
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "multiworker.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    rows = [[w, s["steps_per_s"], s["step_s"] * 1e3, s["allreduce_s"] * 1e3,
             100 * s["allreduce_share"]] for w, s in summary.items()]
    print(table(rows, ["workers", "steps/s", "ms/step", "all-reduce ms/step", "all-reduce %"]))
    print(f"speed-up 2 vs 1 worker: {out['speedup_2_vs_1']:.2f}x ({os.cpu_count()} cores); {path}")


if __name__ == "__main__":
    main()
