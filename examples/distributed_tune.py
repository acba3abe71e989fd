"""Distributed KerasTuner search of a keras_wreg method: one chief (the oracle) + N workers.

KerasTuner's own chief/worker mode: every process runs the same tune job; the environment
variables decide the role.

    KERASTUNER_TUNER_ID=chief   KERASTUNER_ORACLE_IP=<ip> KERASTUNER_ORACLE_PORT=<port>  (oracle)
    KERASTUNER_TUNER_ID=tuner0  KERASTUNER_ORACLE_IP=<ip> KERASTUNER_ORACLE_PORT=<port>  (worker)
    KERASTUNER_TUNER_ID=tuner1  ...

On several machines, start ``python -m keras_wreg.tuning <same args>`` (or ``keras-wreg tune``)
on each with those variables and a shared ``--directory`` (a network file system: workers write
the trial checkpoints the chief reads at the end). This script does it on one machine
(127.0.0.1, a free port) for a quick look:

    python examples/distributed_tune.py --workers 2 -- --method wreg --tuner random \
        --max-trials 6 --epochs 2 --dataset mnist --train-subset 3000 --width 16 \
        --directory runs/tune_dist --overwrite
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_for(path, text, proc, timeout):
    """Wait until ``text`` appears in the log ``path`` (or ``proc`` exits)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        with open(path) as f:
            if text in f.read():
                return
        time.sleep(0.2)


def launch(tune_args, workers=2, host="127.0.0.1", port=None, timeout=None, log_dir=None):
    """Start the chief and ``workers`` workers; wait; return ``{tuner_id: (returncode, log)}``.

    The workers start once the chief has set up the project (so a chief ``--overwrite`` cannot
    wipe what a worker already wrote); ``--overwrite`` is passed to the chief only.
    """
    port = port or free_port(host)
    log_dir = log_dir or tempfile.mkdtemp(prefix="kt_dist_")
    deadline = None if timeout is None else time.monotonic() + timeout
    procs = {}
    try:
        for tuner_id in ["chief"] + [f"tuner{i}" for i in range(workers)]:
            env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP=host,
                       KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="2")
            args = [a for a in tune_args if tuner_id == "chief" or a != "--overwrite"]
            log = os.path.join(log_dir, f"{tuner_id}.log")
            with open(log, "w") as out:
                procs[tuner_id] = subprocess.Popen(
                    [sys.executable, "-m", "keras_wreg.tuning", *args], env=env, stdout=out,
                    stderr=subprocess.STDOUT)
            if tuner_id == "chief":
                _wait_for(log, "[keras-wreg tune] method=", procs["chief"], timeout or 600)
        results = {}
        for tuner_id, proc in procs.items():
            left = None if deadline is None else max(1.0, deadline - time.monotonic())
            proc.wait(timeout=left)
            with open(os.path.join(log_dir, f"{tuner_id}.log")) as f:
                results[tuner_id] = (proc.returncode, f.read())
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("tune_args", nargs=argparse.REMAINDER,
                        help="arguments of the tune job, after --")
    args = parser.parse_args()
    tune_args = args.tune_args[1:] if args.tune_args[:1] == ["--"] else args.tune_args
    for tuner_id, (code, text) in launch(tune_args, args.workers, port=args.port).items():
        print(f"===== {tuner_id} (exit {code}) =====")
        print("\n".join(line for line in text.splitlines() if "[keras-wreg tune]" in line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
