#!/bin/bash
# One row of Table I on a SLURM cluster: run on the LOGIN node, from the repository's root, with the project's
# environment activated (docs/slurm.md):
#
#   source .venv/bin/activate
#   SHARDS=4 SBATCH_ARGS="--partition=gpu --gres=gpu:1 --cpus-per-task=8 --time=2:00:00" \
#       bash tools/slurm.sh --data ./megc --ckplus ./ck --out runs/megc/paper --cache /shared/features
#
# It fetches the ImageNet weights here (compute nodes are often offline) and passes them on as --weights, submits a
# job array of SHARDS shards over the folds (tools/slurm_job.sh, requeued when pre-empted), and the merge as a job
# that starts once every shard has succeeded (--dependency=afterok). It prints the two job ids.
set -euo pipefail
source "$(dirname "$0")/slurm_env.sh"      # the root, and $PY: the activated environment's python
SHARDS=${SHARDS:-4}
args=("$@")
case " $* " in
    *" --weights "* | *" --init random "* | *" --demo "*) ;;     # given, or none needed (--demo trains from scratch)
    *) weights=$("$PY" -c 'from engine.weights import imagenet_weights, imagenet_cache_path
imagenet_weights(download=True); print(imagenet_cache_path())')
       args+=(--weights "$weights") ;;
esac
# --parsable prints "jobid" or "jobid;cluster".
array=$(sbatch --parsable --array=1-"$SHARDS" --requeue --signal=B:USR1@300 --open-mode=append ${SBATCH_ARGS:-} \
        --job-name=mer-folds tools/slurm_job.sh "$PY" "$SHARDS" "${args[@]}")
array=${array%%;*}
merge=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes ${MERGE_SBATCH_ARGS:-} \
        --job-name=mer-merge tools/slurm_job.sh "$PY" merge "${args[@]}")
echo "folds: job array $array ($SHARDS shards); merge: job ${merge%%;*}, once every shard has succeeded"
