#!/bin/bash
# The batch script tools/slurm.sh submits: tools/slurm_job.sh PYTHON SHARDS|merge MER_ARGS...
# As an array task, shard $SLURM_ARRAY_TASK_ID of SHARDS of the folds; a stop warned of (SIGUSR1 from --signal, or
# SIGTERM) saves every fold in training and requeues the task, which resumes there. As `merge`, the same command
# without --folds: every fold is found in the run folder and nothing is trained; it writes the tables.
PY=$1; SHARDS=$2; shift 2
if [ "$SHARDS" = merge ]; then
    exec "$PY" mer.py "$@"
fi
"$PY" mer.py "$@" --folds "$SLURM_ARRAY_TASK_ID/$SHARDS" &
pid=$!
trap 'kill -USR1 $pid' USR1 TERM    # pass the warning on: the run saves its folds and stops
wait $pid; status=$?
while kill -0 $pid 2>/dev/null; do wait $pid; status=$?; done    # a trapped signal ends `wait` early
if [ $status -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; fi  # stopped with its work kept: run it again
exit $status
