#!/usr/bin/env bash
# Set up the environment and run the test suite (no GPU needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/install_browser.sh || true  # headless Chromium for tests/viewer (skips there if missing)
.venv/bin/python -m pytest -q "$@"
