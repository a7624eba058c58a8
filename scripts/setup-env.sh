#!/usr/bin/env bash
# Create .venv if missing and install gzmorph into it, at the exact versions of requirements.lock
# (pyproject.toml holds the version ranges; the lock file what the tests ran with).
# Usage: scripts/setup-env.sh [EXTRAS]    e.g. scripts/setup-env.sh '[test]'
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
py=${PYTHON:-python3}

if ! command -v "$py" >/dev/null || ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11, 4))'; then
    echo "gzmorph needs Python >= 3.11.4 as '$py' (set PYTHON=/path/to/python3.11+)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$py" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        # Debian/Ubuntu ship venv/ensurepip as a separate package
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            "$py" -m venv .venv
        else
            echo "cannot create a virtual environment: install python3-venv (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
stamp=".venv/.gzmorph-installed${extras//[^a-z]/-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
    echo "installing gzmorph$extras into .venv (first time: torch takes a few minutes)" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".$extras" -c requirements.lock
    touch "$stamp"
fi
