#!/usr/bin/env bash
# The login test drives a real headless Chromium (Debian's chromium and chromium-driver).
# Install them when missing; say clearly what to do when that is not possible.
set -u
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
echo "installing Debian's chromium and chromium-driver for the browser login test" >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
if $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 ||
  { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; then
  exit 0
fi
echo "cannot install chromium and chromium-driver: install them (apt-get install chromium chromium-driver) and run again" >&2
exit 1
