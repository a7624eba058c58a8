#!/usr/bin/env bash
# Set up (if needed, with test extras) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-env.sh '[test]'
exec .venv/bin/python -m pytest "$@"
