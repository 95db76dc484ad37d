#!/usr/bin/env bash
# Soak: runs N seeded process-level fault schedules (default 50) against castor-control
# and four engines (tests/control/fault_schedule_test.py) and writes a summary.
#   scripts/soak-process-schedules.sh [COUNT] [SEED_BASE]
# Each schedule's seed and events are printed before it runs; a failing one is replayed
# alone with the command line the log prints (CASTOR_SCHEDULE_SEED=<seed>
# CASTOR_SCHEDULES=1 python3 tests/control/fault_schedule_test.py ...; see
# docs/testing.md). The run stops after 3 failed schedules. Needs root (network
# namespaces). Uses the test build (ASan/UBSan), building its four binaries first under
# the shared build lock. About a minute per schedule on two cores. The log goes to
# build/test/soak-process-schedules-<seed base>.log, the summary to
# build/test/soak-process-schedules-<seed base>.txt and to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-50}
base=${2:-$(od -An -N5 -tu8 /dev/urandom | tr -d ' ')}
[[ -f build/test/build.ninja ]] || scripts/setup.sh test
flock /tmp/castor-build.lock cmake --build build/test --target castor-control castor-engine castorctl castor-perf >/dev/null
bins=(build/test/src/control/castor-control build/test/src/engine/castor-engine build/test/src/cli/castorctl
      build/test/src/tools/nvmfperf/castor-perf)
log=build/test/soak-process-schedules-$base.log
summary=build/test/soak-process-schedules-$base.txt
echo "soak: $count process fault schedules from seed base $base (log: $log)"
start=$(date +%s)
rc=0
CASTOR_SCHEDULE_SEED=$base CASTOR_SCHEDULES=$count \
  python3 tests/control/fault_schedule_test.py "${bins[@]}" >"$log" 2>&1 || rc=$?
{
  echo "process fault schedule soak: $(date -u +%FT%TZ), seed base $base, $count schedules, $(($(date +%s) - start)) s"
  grep -E '^process fault schedules summary' "$log" || echo "no summary line: the run ended early (rc=$rc)"
  grep -E '^FAILED schedule seed=[0-9]+: ' "$log" || true
  echo "exit code: $rc"
} | tee "$summary"
exit "$rc"
