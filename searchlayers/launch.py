"""Multi-worker search on one machine or a cluster: the launcher and the worker side.

Data-parallel search across processes uses TensorFlow's own engine,
``tf.distribute.MultiWorkerMirroredStrategy``, configured by the ``TF_CONFIG``
environment variable of each process. This module

- starts N local worker processes with ``TF_CONFIG`` on free loopback ports
  (``python -m searchlayers.launch --workers 2 -- python -m examples.darts_search ...``),
  prefixes their output with ``[worker i]``, kills the others when one fails (and,
  with ``--restarts``, starts them all again, as a cluster manager would: a
  ``BackupAndRestore`` callback then resumes the search), and stops them all
  after ``--timeout`` seconds;
- without ``--workers`` runs the command once with the ``TF_CONFIG`` the
  cluster gave this machine (one launcher per machine), with the same output
  prefix, timeout and restarts;
- gives worker code ``strategy_from_env`` (the strategy ``TF_CONFIG`` asks
  for) and ``is_chief`` (only the chief writes logs, exports and summaries).

Exit status: 0 when every worker exited 0, otherwise the first failure's
status (124 after the timeout).

Example:
    >>> cluster_config(["127.0.0.1:2222", "127.0.0.1:2223"], 1)["task"]
    {'type': 'worker', 'index': 1}
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

ATTEMPT = "SEARCHLAYERS_LAUNCH_ATTEMPT"  # 0 at the first start, +1 per restart


def free_ports(count, host="127.0.0.1"):
    """``count`` distinct free TCP ports on ``host`` (the OS picks them: bind to port 0).

    Example:
        >>> len(set(free_ports(3)))
        3
    """
    sockets = []
    try:
        for _ in range(count):  # all open at once, so the OS gives distinct ports
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_config(addresses, index):
    """The ``TF_CONFIG`` dict of worker ``index`` of a cluster of ``addresses``.

    Example:
        >>> cluster_config(["127.0.0.1:2222"], 0)["cluster"]
        {'worker': ['127.0.0.1:2222']}
    """
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}


def strategy_from_env():
    """``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names a cluster, else None.

    Call it first thing in a worker: the strategy must exist before other
    TensorFlow ops run in the process.

    Example:
        >>> strategy_from_env() is None  # no TF_CONFIG
        True
    """
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    if not config.get("cluster"):
        return None
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy=None):
    """True unless this process is a non-chief worker of a multi-worker strategy
    (``strategy``, default the current one): only the chief writes files.

    Example:
        >>> is_chief()
        True
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    return bool(strategy.extended.should_checkpoint)


class _Group:
    """The running worker processes of one attempt."""

    def __init__(self, command, envs, output, names):
        self.output, self.lock = output, threading.Lock()
        self.procs = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
            for env in envs
        ]
        self.threads = [threading.Thread(target=self._stream, args=(p, name), daemon=True)
                        for p, name in zip(self.procs, names)]
        for t in self.threads:
            t.start()

    def _stream(self, proc, name):
        for line in proc.stdout:
            with self.lock:
                self.output.write(f"{name} {line}" if name else line)
                self.output.flush()

    def wait(self, deadline):
        """The first non-zero status (or 0 when all succeed, 124 at the deadline)."""
        while True:
            codes = [p.poll() for p in self.procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                return failed[0]
            if all(c == 0 for c in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                return 124
            time.sleep(0.05)

    def kill(self):
        """Kills every process group still running (a worker's children too)."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            p.wait()
        for t in self.threads:
            t.join(timeout=5)


def launch(command, workers=None, timeout=None, restarts=0, host="127.0.0.1", env=None,
           output=None, prefix=True):
    """Runs ``command`` as ``workers`` local processes (``TF_CONFIG`` on free
    ports of ``host``), or once with this machine's ``TF_CONFIG`` when
    ``workers`` is None; returns the exit status (see the module docstring).

    Example:
        >>> launch([sys.executable, "-c", "print('hi')"], workers=2, output=sys.stdout)  # doctest: +SKIP
        [worker 0] hi
        [worker 1] hi
        0
    """
    if not command:
        raise ValueError("launch: give the command to run, e.g. `-- python -m examples.darts_search`.")
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers
                                or workers < 1):
        raise ValueError(f"launch: workers must be an integer >= 1, got {workers!r}.")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"launch: timeout must be a number of seconds > 0, got {timeout!r}.")
    if int(restarts) < 0:
        raise ValueError(f"launch: restarts must be an integer >= 0, got {restarts!r}.")
    output = output or sys.stdout
    base = dict(os.environ if env is None else env)
    deadline = None if timeout is None else time.monotonic() + timeout
    for attempt in range(int(restarts) + 1):
        if workers is None:
            envs, names = [dict(base)], ["[worker]" if prefix else ""]
        else:
            addresses = [f"{host}:{p}" for p in free_ports(workers, host)]
            envs = [{**base, "TF_CONFIG": json.dumps(cluster_config(addresses, i))}
                    for i in range(workers)]
            names = [f"[worker {i}]" if prefix else "" for i in range(workers)]
        for e in envs:
            e[ATTEMPT] = str(attempt)
        group = _Group(command, envs, output, names)
        try:
            status = group.wait(deadline)
        finally:
            group.kill()
        if status in (0, 124):
            break
        if attempt < int(restarts):
            output.write(f"[launch] a worker exited with status {status}; restarting all "
                         f"workers ({attempt + 1} of {restarts})\n")
    if status == 124:
        output.write(f"[launch] timeout after {timeout} s; killed every worker\n")
    return status


def main(argv=None):
    """``python -m searchlayers.launch [--workers N] [--timeout S] [--restarts R] -- command``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" not in argv:
        print("usage: python -m searchlayers.launch [--workers N] [--timeout S] "
              "[--restarts R] -- command ...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m searchlayers.launch")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes (default: one, with this machine's TF_CONFIG)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before all are killed")
    parser.add_argument("--restarts", type=int, default=0,
                        help="times to restart every worker after a failure")
    parser.add_argument("--host", default="127.0.0.1", help="address of the local workers")
    args = parser.parse_args(argv[:split])
    return launch(argv[split + 1:], args.workers, args.timeout, args.restarts, args.host)


if __name__ == "__main__":
    sys.exit(main())
