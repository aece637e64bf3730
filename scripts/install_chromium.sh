#!/usr/bin/env bash
# Installs Debian's Chromium for the report's browser test (tests/lab/report_browser_test.ts).
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (apt-get).
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "scripts/install_chromium.sh: run as root to apt-get install chromium" >&2
  exit 1
fi
echo "scripts/install_chromium.sh: installing Debian's chromium" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
/usr/bin/chromium --version >&2
