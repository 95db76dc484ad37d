#!/usr/bin/env bash
# Soak: runs N seeded power-loss crash points (default 10000) of each pool crash test
# (one disk; several disks all losing power; several disks, one losing its cache) and
# N/20 power losses inside a replica grow, and writes a summary.
#   scripts/soak-pool-crash.sh [COUNT] [SEED_BASE]
# The seeds run from SEED_BASE; a failing one is printed with its replay line
# (CASTOR_CRASH_SEED=<seed> CASTOR_CRASH_POINTS=1 --gtest_filter=..., see docs/testing.md).
# Uses the test build (ASan/UBSan), building it first if needed. The summary goes to
# build/test/soak-pool-crash-<seed base>.txt and to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}
base=${2:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
grow=$(( count / 20 > 0 ? count / 20 : 1 ))
[[ -f build/test/build.ninja ]] || scripts/setup.sh test
flock /tmp/castor-build.lock cmake --build build/test --target pool_test >/dev/null
log=build/test/soak-pool-crash-$base.log
summary=build/test/soak-pool-crash-$base.txt
echo "soak: $count crash points per pool crash test, $grow grow power losses, seeds from $base (log: $log)"
start=$(date +%s)
rc=0
CASTOR_CRASH_SEED=$base CASTOR_CRASH_POINTS=$count CASTOR_GROW_SEED=$base CASTOR_GROW_POINTS=$grow \
  build/test/tests/pool/pool_test \
  --gtest_filter='PoolCrash.RandomizedPowerLossWithVolatileCache:PoolCrash.MultiDisk*:PoolGrow.PowerLossDuringAGrowUnderIo' \
  >"$log" 2>&1 || rc=$?
{
  echo "pool crash soak: $(date -u +%FT%TZ), seed base $base, $count points per test, $grow grow trials, $(($(date +%s) - start)) s"
  grep -E '^Pool(Crash|Grow)\.[A-Za-z]+: [0-9]+ trials' "$log" || true
  grep -E '^FAILED at seed' "$log" || true
  grep -E '^\[  (PASSED|FAILED) ' "$log" || echo "no gtest verdict: the run ended early (rc=$rc)"
  echo "gtest exit code: $rc"
} | tee "$summary"
exit "$rc"
