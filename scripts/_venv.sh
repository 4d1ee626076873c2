# Sourced by scripts/demo and scripts/test: a project virtualenv with what they need.
# torch is pinned (2.13.0, the CPU build): a looser spec can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# The install log is shown only when the install fails.
if ! .venv/bin/python -m pip install --quiet -e ".[$1]" >.venv/install.log 2>&1; then
  grep -v "^WARNING: Location" .venv/install.log >&2
  echo "installing lossdoctor[$1] failed (log above)" >&2
  exit 1
fi
