"""Run ``keras-wreg train --strategy multi_worker`` as N worker processes on this machine.

On N machines you start the same command on each, with a ``TF_CONFIG`` that lists every worker
and says which one this is (see README, "Training on several machines"). This script does that
on one machine (127.0.0.1, free ports) for a quick look or a test:

    python examples/multi_worker_train.py --workers 2 -- --dataset digits --width 4 \\
        --batch-size 32 --train-subset 256 --epochs 1 --out runs/mw --verbose 0

Worker 0 is the chief and writes ``<out>/``; worker i writes ``<out>/worker-i/``.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_ports(count, host="127.0.0.1"):
    """``count`` distinct free TCP ports on ``host`` (held open together while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(workers, index):
    """The ``TF_CONFIG`` value of worker ``index`` of the cluster ``workers`` (host:port list)."""
    return json.dumps({"cluster": {"worker": list(workers)},
                       "task": {"type": "worker", "index": index}})


def launch(train_args, workers=2, host="127.0.0.1", timeout=None, log_dir=None, env=None):
    """Start ``workers`` processes of ``keras-wreg train --strategy multi_worker <train_args>``.

    Returns ``{index: (returncode, log)}``; on timeout every process still running is killed
    and its return code is None.
    """
    addresses = [f"{host}:{port}" for port in free_ports(workers, host)]
    log_dir = log_dir or tempfile.mkdtemp(prefix="kw_multi_worker_")
    deadline = None if timeout is None else time.monotonic() + timeout
    procs, logs = {}, {}
    try:
        for index in range(workers):
            worker_env = dict(os.environ, **(env or {}), TF_CONFIG=tf_config(addresses, index),
                              TF_CPP_MIN_LOG_LEVEL="2")
            logs[index] = os.path.join(log_dir, f"worker-{index}.log")
            with open(logs[index], "w") as out:
                procs[index] = subprocess.Popen(
                    [sys.executable, "-m", "keras_wreg.cli", "train", "--strategy",
                     "multi_worker", *train_args],
                    env=worker_env, stdout=out, stderr=subprocess.STDOUT)
        results = {}
        for index, proc in procs.items():
            left = None if deadline is None else max(1.0, deadline - time.monotonic())
            try:
                code = proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                code = None
            with open(logs[index]) as f:
                results[index] = (code, f.read())
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="arguments of `keras-wreg train` (after --)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    train_args = [a for a in args.train_args if a != "--"]
    start = time.perf_counter()
    results = launch(train_args, workers=args.workers, timeout=args.timeout)
    for index, (code, log) in results.items():
        print(f"--- worker {index}: exit code {code}\n{log[-2000:]}")
    print(f"wall time {time.perf_counter() - start:.1f} s")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
