#!/bin/bash
# Spotting many long videos on a SLURM cluster: run on the LOGIN node, from the repository's root, with the
# project's environment activated (docs/slurm.md):
#
#   source .venv/bin/activate
#   SBATCH_ARGS="--cpus-per-task=2 --time=1:00:00" bash tools/slurm_spot.sh spots/ --data ./long [--model model.pt]
#   LIST=videos.txt SBATCH_ARGS="..." bash tools/slurm_spot.sh spots/ [--model model.pt] [spot's flags]
#
# With --data (or --demo) it submits a job array with one task per video of the releases (PARTS=n for fewer,
# larger tasks), each writing its intervals to spots/part_<i>.csv; with LIST (a file of video paths, one a line),
# one task per line. Then the merge, as a job that starts once every task has succeeded (--dependency=afterok):
# spots/all.csv, and with --data or --demo MEGC's scores in its output file. It prints the two job ids.
set -euo pipefail
source "$(dirname "$0")/slurm_env.sh"      # the root, and $PY: the activated environment's python
if [ $# -lt 1 ] || [[ $1 == -* ]]; then
    echo "tools/slurm_spot.sh: error: give the output folder first, e.g. bash tools/slurm_spot.sh spots/ --data ./long" >&2
    exit 2
fi
OUT=${1%/}; shift
mkdir -p "$OUT"
if [ -n "${LIST:-}" ]; then
    [ -f "$LIST" ] || { echo "tools/slurm_spot.sh: error: LIST=$LIST: no such file (one video path a line)" >&2; exit 2; }
    MODE="list:$LIST"; N=$(grep -c . "$LIST")
else
    # One task per video of the releases, counted here from their sheets (the same reader the tasks use).
    N=${PARTS:-$("$PY" -c 'import sys
from video import command, longvideo
print(len(longvideo.sources(command.parse_spot(sys.argv[1:]))))' "$@")}
    MODE=$N
fi
array=$(sbatch --parsable --array=1-"$N" --requeue ${SBATCH_ARGS:-} --job-name=mer-spot \
        tools/slurm_spot_job.sh "$PY" "$MODE" "$OUT" "$@")
array=${array%%;*}
merge=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes ${MERGE_SBATCH_ARGS:-} \
        --job-name=mer-spot-merge tools/slurm_spot_job.sh "$PY" merge "$OUT" "$@")
echo "spotting: job array $array ($N tasks, $OUT/part_<i>.csv); merge into $OUT/all.csv: job ${merge%%;*}, once every task has succeeded"
