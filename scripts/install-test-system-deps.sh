#!/usr/bin/env bash
# Install the system packages the browser tests need (headless Chromium + a font).
# Run as root; idempotent: does nothing when Chromium is already installed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium || command -v chromium-browser)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-system-deps.sh: must run as root (apt-get install chromium)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-system-deps.sh: apt-get not found; install Chromium by hand or set \$CHROMIUM" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium fonts-dejavu-core
command -v chromium
