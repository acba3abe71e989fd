#!/usr/bin/env bash
# efficacy_001's runs, two side by side with one core each: on a 2-core machine that does 1.23x
# the images per second of one run on both cores (measured in session 13, width 8).
#
#   bash benchmarks/efficacy_001_queue.sh            # the seed-0 arms and float:1-3, then `complete`
#   bash benchmarks/efficacy_001_queue.sh fda_full:1 larq_lr1e3:1   # only these
#
# Run it from a separate clone (autograph re-reads source files) with the package importable,
# e.g. PYTHON=/path/to/.venv/bin/python KERAS_WREG_BENCH_DIR=/path/to/work. Finished runs are
# skipped (their run files exist) and a killed run resumes from its last epoch's backup, so the
# script can be started again at any time. Each worker claims a job with an atomic mkdir in
# $KERAS_WREG_BENCH_DIR/efficacy_001/claims (remove that folder before restarting).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
WORK=${KERAS_WREG_BENCH_DIR:?set KERAS_WREG_BENCH_DIR to the checkpoint directory}
CLAIMS="$WORK/efficacy_001/claims"
mkdir -p "$CLAIMS"
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

SEED0="fda_full:0 larq_lr1e3:0 fda_no_excite:0 larq_lr2e3:0 fda_no_adjust:0 larq_approx_lr1e3:0
fda_adjust_only:0 larq_approx_lr2e3:0 fda_full_lr2e3:0 larq_lr4e3:0 float:1 float:2 float:3"
JOBS=${*:-$SEED0}

run_jobs() {  # run_jobs CORE JOB...: claim and run each job no other worker has claimed
    local core=$1 job
    shift
    for job in "$@"; do
        mkdir "$CLAIMS/$job" 2>/dev/null || continue
        echo "[queue] core $core: $job ($(date -u +%H:%M:%S))"
        TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c "$core" \
            "$PYTHON" -m benchmarks.efficacy_001 run --config "${job%%:*}" --seed "${job##*:}" \
            || echo "[queue] core $core: $job failed"
    done
}

missing() {  # the reported seeds of the selected arms, once every seed-0 run file exists
    "$PYTHON" - <<'EOF'
from benchmarks import common, efficacy_001 as m
print(" ".join(f"{c}:{s}" for c, s in common.missing_reported(m)))
EOF
}

seed0_done() {
    local job
    for job in $SEED0; do
        case $job in *:0) [ -f "benchmarks/results/efficacy_001/runs/${job%%:*}-s0.json" ] || return 1;; esac
    done
}

worker() {
    local core=$1
    run_jobs "$core" $JOBS
    [ $# -gt 1 ] && return  # explicit jobs only
    until seed0_done; do
        sleep 60
        # a seed-0 job whose worker died is claimed but never finishes: stop waiting for it
        pgrep -f "benchmarks.efficacy_001 run" >/dev/null || { seed0_done || return; }
    done
    run_jobs "$core" $(missing)
}

if [ $# -gt 0 ]; then
    worker 0 explicit & worker 1 explicit &
else
    worker 0 & worker 1 &
fi
wait
echo "[queue] done ($(date -u +%H:%M:%S))"
