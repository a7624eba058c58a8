#!/usr/bin/env bash
# Set up (if needed, with the test and slurm extras: the cluster test submits through the
# Slurm executor plugin) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-env.sh '[test,slurm]'
exec .venv/bin/python -m pytest "$@"
