#!/usr/bin/env bash
# qualm metrics against scikit-learn, SciPy and NumPy references: >= 20
# random and adversarial CSV files (ties, all correct, all wrong, one class,
# n = 1, duplicated scores, extreme probabilities, bin edges, OOD rows,
# regression), the --compare bootstrap replayed draw by draw, and malformed
# files that must exit 1 naming FILE:LINE. The work is in tests/metrics_ref.py.
#
# Needs Debian's /usr/bin/python3 with python3-sklearn (scripts/setup.sh
# installs it); the `python3` first on PATH may be another one without it.
# Prints SKIP and exits 0 when it is missing.
set -uo pipefail
BUILD=${1:?usage: metrics_sklearn.sh BUILD_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${QUALM_SYSTEM_PYTHON:-/usr/bin/python3}

if ! "$PY" -c 'import numpy, scipy, sklearn' >/dev/null 2>&1; then
  echo "SKIP: $PY lacks numpy/scipy/sklearn (apt-get install python3-sklearn)"
  echo "0 passed, 0 failed"
  exit 0
fi
[ -x "$BUILD/qualm" ] || { echo "FAIL: $BUILD/qualm not built"; echo "0 passed, 1 failed"; exit 1; }
exec "$PY" "$HERE/metrics_ref.py" "$BUILD/qualm"
