# Sourced by tools/slurm.sh and tools/slurm_spot.sh on the login node: checks that it runs from the repository's root
# and sets PY to the activated environment's interpreter by its full path (a compute node's PATH need not have the
# right python).
me=tools/$(basename "$0")
if [ ! -f mer.py ]; then
    echo "$me: error: run it from the repository's root (where mer.py is), as bash $me ..." >&2
    exit 2
fi
PY=${PYTHON:-${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}}
PY=${PY:-${CONDA_PREFIX:+$CONDA_PREFIX/bin/python}}
if [ -z "$PY" ] || [ ! -x "$PY" ]; then
    echo "$me: error: no environment activated; run 'source .venv/bin/activate' first (or set PYTHON=/path/to/python)" >&2
    exit 2
fi
