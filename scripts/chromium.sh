#!/usr/bin/env bash
# Installs what the browser tests drive, idempotently: Debian's `chromium`
# and `chromium-driver` where chromedriver is missing. Prints its path.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromedriver >/dev/null 2>&1; then
    echo "chromium.sh: installing chromium and chromium-driver" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi
command -v chromedriver
