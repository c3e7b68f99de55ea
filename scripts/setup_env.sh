#!/usr/bin/env bash
# Create .venv (Python 3.11) and install dtnerf_ns with its pinned dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "dtnerf_ns needs Python 3.11 (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Re-install only when pyproject.toml changed since the last successful install.
stamp=.venv/.dtnerf-installed
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  cp pyproject.toml "$stamp"
fi
# ns-render insists on an `ffmpeg` program; where the system has none, use the one imageio-ffmpeg ships.
if ! command -v ffmpeg >/dev/null 2>&1 && [ ! -e .venv/bin/ffmpeg ]; then
  ln -s "$(.venv/bin/python -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" .venv/bin/ffmpeg
fi
