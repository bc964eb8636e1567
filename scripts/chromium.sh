#!/usr/bin/env bash
# Installs Debian's Chromium for the tests that load a page in a real headless browser
# (`examples/tests/timeline.rs`), if it is not there. Idempotent.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
echo "chromium.sh: installing the distribution's chromium" >&2
if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
else
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
