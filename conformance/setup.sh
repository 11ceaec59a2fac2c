#!/usr/bin/env bash
# Create (or refresh) the pinned reference environment used to generate the
# golden fixtures, the bundled digits model and the benchmark exports.
# Idempotent: re-running only installs what is missing or differs from the pins.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="${PYTHON:-python3.11}"

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "setup.sh: $PY not found (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup.sh: creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi

ver="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$ver" != "3.11" ]; then
    echo "setup.sh: $VENV uses python $ver, expected 3.11; remove it and re-run" >&2
    exit 1
fi

"$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt"

"$VENV/bin/python" - <<'PY'
import torch, executorch, torchvision, numpy, sklearn
from executorch.runtime import Runtime
Runtime.get()
print("reference stack ok: torch", torch.__version__, "torchvision", torchvision.__version__,
      "numpy", numpy.__version__, "scikit-learn", sklearn.__version__)
PY
