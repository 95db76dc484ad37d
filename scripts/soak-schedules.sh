#!/usr/bin/env bash
# Soak: runs N seeded nexus fault schedules (default 1000) and writes a summary.
#   scripts/soak-schedules.sh [COUNT] [SEED_BASE]
# Each schedule's seed and events are printed before it runs; a failing one is replayed
# with CASTOR_SCHEDULE_SEED=<seed> CASTOR_SCHEDULES=1 (see docs/testing.md). Uses the test
# build (ASan/UBSan), building it first if needed. The summary goes to
# build/test/soak-schedules-<seed base>.txt and to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
base=${2:-$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')}
[[ -f build/test/build.ninja ]] || scripts/setup.sh test
cmake --build build/test --target nexus_test >/dev/null
log=build/test/soak-schedules-$base.log
summary=build/test/soak-schedules-$base.txt
echo "soak: $count fault schedules from seed base $base (log: $log)"
start=$(date +%s)
rc=0
CASTOR_SCHEDULE_SEED=$base CASTOR_SCHEDULES=$count \
  build/test/tests/nexus/nexus_test --gtest_filter='FaultSchedules.*' >"$log" 2>&1 || rc=$?
{
  echo "fault schedule soak: $(date -u +%FT%TZ), seed base $base, $count schedules, $(($(date +%s) - start)) s"
  grep -E '^fault schedules summary' "$log" || echo "no summary line: the run ended early (rc=$rc)"
  grep -E '^FAILED schedule' "$log" || true
  echo "gtest exit code: $rc"
} | tee "$summary"
exit "$rc"
