#!/usr/bin/env bash
# Run every benchmark with one command; arguments go to `python -m benchmarks`:
#
#   benchmarks/run_all.sh              # full data (~300 MB weights, 5,000 files), ~7-10 min
#   benchmarks/run_all.sh --quick      # 60 MiB weights, 1,000 files, ~1-2 min
#   benchmarks/run_all.sh --repeat 5 --workdir /var/tmp
#
# Results: the table on stdout, JSON in benchmarks/results/<size>-<date>.json
# (git-ignored) unless --json is given.
#
# Python: scripts/run (the project's environment) when it works, else
# $BENCH_PYTHON (with this checkout on PYTHONPATH).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
checkout=$(dirname -- "$here")
cd -- "$checkout"

args=("$@")
if [[ " ${args[*]-} " != *" --json "* && " ${args[*]-} " != *" --json="* ]]; then
    size=full
    [[ " ${args[*]-} " == *" --quick "* ]] && size=quick
    args+=(--json "$here/results/$size-$(date +%Y%m%d-%H%M%S).json")
fi

export PYTHONPATH=$checkout${PYTHONPATH:+:$PYTHONPATH}
python=${BENCH_PYTHON:-}
if [[ -z $python ]]; then
    # scripts/run may (re)build the environment (minutes on a bare machine).
    python=$(timeout 1800 scripts/run python -c \
        'import sys, dffml_archive, numpy; print(sys.executable)' 2>/dev/null | tail -n 1) || python=
fi
if [[ -z $python ]]; then
    echo "no Python environment: fix scripts/run or set BENCH_PYTHON" >&2
    exit 2
fi
exec "$python" -u -m benchmarks "${args[@]}"
