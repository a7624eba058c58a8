#!/usr/bin/env bash
# Set up (if needed) and run the whole workflow on the default config.
# Extra arguments go to snakemake, e.g. scripts/run.sh --config source=kaggle data_dir=...
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-env.sh
exec .venv/bin/snakemake --cores all "$@"
