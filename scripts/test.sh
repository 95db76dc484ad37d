#!/usr/bin/env bash
# Sets up (packages + Debug ASan/UBSan build) and runs Castor's whole test suite through
# CTest; CTest's summary is the last thing printed. Extra arguments go to ctest
# (e.g. -L unit, -R Fault).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
cd build/test
exec ctest -j "$(nproc)" --output-on-failure --timeout 600 "$@"
