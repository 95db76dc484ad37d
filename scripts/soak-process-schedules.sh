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
# The run uses copies: a build running meanwhile (the tree is shared) would replace the
# binaries under it, and an engine restarted then fails to exec.
bindir=$(mktemp -d /tmp/castor-soak-bin.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
cp build/test/src/control/castor-control build/test/src/engine/castor-engine build/test/src/cli/castorctl \
   build/test/src/tools/nvmfperf/castor-perf "$bindir"/
bins=("$bindir/castor-control" "$bindir/castor-engine" "$bindir/castorctl" "$bindir/castor-perf")
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
  # Replay lines name the build's binaries, not the run's copies.
  grep -E '^FAILED schedule seed=[0-9]+: ' "$log" |
    sed -e "s#$bindir/castor-control#$PWD/build/test/src/control/castor-control#" \
        -e "s#$bindir/castor-engine#$PWD/build/test/src/engine/castor-engine#" \
        -e "s#$bindir/castorctl#$PWD/build/test/src/cli/castorctl#" \
        -e "s#$bindir/castor-perf#$PWD/build/test/src/tools/nvmfperf/castor-perf#" || true
  echo "exit code: $rc"
} | tee "$summary"
exit "$rc"
