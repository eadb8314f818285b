#!/bin/bash
# The batch script tools/slurm_spot.sh submits: tools/slurm_spot_job.sh PYTHON PARTS|list:FILE|merge OUT SPOT_ARGS...
# As an array task, part $SLURM_ARRAY_TASK_ID of PARTS of the releases' videos (or that line of FILE) spotted into
# OUT/part_<i>.csv, written whole or not at all (a requeued task writes it again); as `merge`, every part's file
# joined into OUT/all.csv and scored where the truth is known.
PY=$1; MODE=$2; OUT=$3; shift 3
i=${SLURM_ARRAY_TASK_ID:-}
case $MODE in
    merge)  exec "$PY" mer.py spot --merge "$OUT"/part_*.csv --out "$OUT/all.csv" "$@" ;;
    list:*) exec "$PY" mer.py spot "$(sed -n "${i}p" "${MODE#list:}")" --out "$OUT/part_$i.csv" "$@" ;;
    *)      exec "$PY" mer.py spot "$@" --part "$i/$MODE" --out "$OUT/part_$i.csv" ;;
esac
