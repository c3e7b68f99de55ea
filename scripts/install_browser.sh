#!/usr/bin/env bash
# Installs headless Chromium and chromedriver (Debian packages `chromium`, `chromium-driver`) for the viewer test
# (tests/viewer/test_viewer_browser.py). Idempotent; never fails: where they cannot be installed it says why and
# exits 0, and that test skips.
set -u

have() { command -v "$1" >/dev/null 2>&1; }

if have chromium && have chromedriver; then
    exit 0
fi

if ! have apt-get; then
    echo "install_browser.sh: no apt-get here; install chromium and chromedriver yourself (the viewer test skips)" >&2
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif have sudo && sudo -n true >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    echo "install_browser.sh: not root and no passwordless sudo; cannot install chromium/chromium-driver" \
        "(the viewer test skips)" >&2
    exit 0
fi

echo "install_browser.sh: installing chromium and chromium-driver with apt-get ..."
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq >/dev/null \
    || ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
    echo "install_browser.sh: apt-get could not install chromium/chromium-driver (the viewer test skips)" >&2
    exit 0
fi

if have chromium && have chromedriver; then
    echo "install_browser.sh: $(chromium --version 2>/dev/null | head -n 1) and chromedriver installed"
else
    echo "install_browser.sh: installed, but chromium/chromedriver are still not on PATH (the viewer test skips)" >&2
fi
exit 0
