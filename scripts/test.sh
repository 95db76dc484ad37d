#!/usr/bin/env bash
# Sets up (packages + Debug ASan/UBSan build) and runs Castor's whole test suite through
# CTest. Extra arguments go to ctest (e.g. -L unit, -R Fault). When a test fails, a short
# digest of why (scripts/failure-digest.py) follows CTest's summary, so that the end of
# the output says what failed even when a long log is shown cut.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
cd build/test
rc=0
ctest -j "$(nproc)" --output-on-failure --timeout 600 "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  /usr/bin/python3 ../../scripts/failure-digest.py Testing/Temporary/LastTest.log || true
fi
exit "$rc"
