#!/usr/bin/env bash
# Fuzzes Castor with libFuzzer: builds the clang fuzz targets in build/fuzz, then runs
# each target in turn, one process at a time, starting from its seeds and a corpus kept
# across runs.
#
#   scripts/fuzz.sh [MINUTES_PER_TARGET] [TARGET...]   (default: 10 minutes, every target)
#
#   build/fuzz/corpus/<target>/    corpus (seeds + what libFuzzer found; kept across runs)
#   build/fuzz/crashes/<target>/   crash-*, leak-*, timeout-*, oom-* inputs
#   build/fuzz/logs/<target>.log   libFuzzer's output of the last run
#   build/fuzz/fuzz-results.tsv    one line per target run (appended)
#
# Prints per target: executions, exec/s, coverage (cov/ft of libFuzzer's last status
# line), corpus size and crashes. Exits 1 if any target crashed, leaked, hung (an input
# running longer than FUZZ_TIMEOUT s, default 30), ran out of memory or hit undefined
# behaviour (UBSan is made fatal unless UBSAN_OPTIONS is set).
#
# Environment: FUZZ_BUILD (build dir, default build/fuzz), FUZZ_TIMEOUT (s per input),
# FUZZ_RSS_LIMIT_MB (default 2048), FUZZ_JOBS (ninja -j, default 2),
# FUZZ_LOCK (default /tmp/castor-build.lock: builds run under flock on it).
# Reproduce a crash: build/fuzz/fuzz/<target> build/fuzz/crashes/<target>/crash-...
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 [MINUTES_PER_TARGET] [TARGET...]" >&2; exit 2; }
minutes=10
if (($#)); then
  [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]] || usage
  minutes=$1; shift
fi
seconds=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60 + 0.5); print (s < 1 ? 1 : s) }')

all_targets=($(sed -n 's/^castor_fuzz_target(\([a-z0-9_]*\) .*/\1/p' fuzz/CMakeLists.txt))
if (($#)); then
  targets=()
  for t in "$@"; do
    t=${t%_seeds}
    [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz: unknown target $t (have: ${all_targets[*]})" >&2; exit 2; }
    targets+=("$t")
  done
else
  targets=("${all_targets[@]}")
fi

build=${FUZZ_BUILD:-build/fuzz}
timeout_s=${FUZZ_TIMEOUT:-30}
rss_mb=${FUZZ_RSS_LIMIT_MB:-2048}
lock=${FUZZ_LOCK:-/tmp/castor-build.lock}

# --- toolchain ------------------------------------------------------------------------
die() { echo "fuzz: $*" >&2; exit 2; }
command -v clang++ >/dev/null || die "clang++ not found: install the Debian package 'clang' (apt-get install clang)"
for tool in cmake ninja flock; do command -v $tool >/dev/null || die "$tool not found"; done
clang_major=$(clang++ -dumpversion | cut -d. -f1)
resource_dir=$(clang++ -print-resource-dir)
if ! compgen -G "$resource_dir/lib/*/libclang_rt.fuzzer*.a" >/dev/null; then
  die "libFuzzer runtime (libclang_rt.fuzzer-*.a) not found under $resource_dir/lib: install the Debian package 'libclang-rt-${clang_major}-dev' (clang ${clang_major})"
fi

# --- build ----------------------------------------------------------------------------
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
if [[ ! -f $build/build.ninja ]]; then
  echo "fuzz: configuring $build with clang"
  CC=clang CXX=clang++ flock "$lock" cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCASTOR_WERROR=OFF -DCASTOR_FUZZING=ON >"$build.configure.log" 2>&1 \
    || { tail -30 "$build.configure.log"; die "configure failed (log: $build.configure.log)"; }
fi
grep -q '^CASTOR_FUZZING:BOOL=ON' "$build/CMakeCache.txt" || die "$build is not configured with -DCASTOR_FUZZING=ON"
grep -q '^CMAKE_CXX_COMPILER:.*clang' "$build/CMakeCache.txt" || die "$build is not a clang build (remove it and rerun)"

ninja_targets=()
for t in "${targets[@]}"; do ninja_targets+=("$t" "${t}_seeds"); done
mkdir -p "$build/logs"
echo "fuzz: building ${#ninja_targets[@]} targets in $build (log: $build/logs/build.log)"
if ! flock "$lock" ninja -C "$build" -j "${FUZZ_JOBS:-2}" "${ninja_targets[@]}" >"$build/logs/build.log" 2>&1; then
  grep -E -A5 'error|FAILED' "$build/logs/build.log" | head -60
  die "build failed (log: $build/logs/build.log)"
fi

# --- run ------------------------------------------------------------------------------
# UBSan only reports and goes on by default (CASTOR_FUZZING does not set
# -fno-sanitize-recover): make the first undefined behaviour fatal, so that libFuzzer
# saves the input as a crash.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
results=$build/fuzz-results.tsv
[[ -f $results ]] || printf 'date\ttarget\tseconds\texecs\texec_per_s\tcov\tft\tcorpus_files\tnew_units\tcrashes\tstatus\n' >"$results"

rows=()
failed=0
child=0
trap '[[ $child -gt 0 ]] && kill "$child" 2>/dev/null; echo "fuzz: interrupted" >&2; exit 130' INT TERM

for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  crashes=$build/crashes/$t
  log=$build/logs/$t.log
  mkdir -p "$corpus" "$crashes"
  if ! "$build/fuzz/${t}_seeds" --write-seeds "$corpus" >/dev/null; then
    echo "fuzz: $t: writing seeds failed" >&2
    rows+=("$t|-|-|-|-|-|-|SEEDS FAILED"); failed=1; continue
  fi
  before=$(ls "$crashes" | sort)
  echo "fuzz: $t: ${seconds}s from $(ls "$corpus" | wc -l) corpus files ($(date -u +%H:%M:%S) UTC)"
  # libFuzzer stops itself after max_total_time (and on a slow input after -timeout);
  # the outer timeout only catches a target wedged where libFuzzer cannot.
  timeout -k 10 $((seconds + timeout_s + 120)) \
    "$build/fuzz/$t" -max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" \
    -artifact_prefix="$crashes/" -print_final_stats=1 "$corpus" >"$log" 2>&1 &
  child=$!
  wait $child; rc=$?
  child=0

  # New files, and the one the log names (an input that failed before keeps its name).
  new_artifacts=$( { comm -13 <(echo "$before") <(ls "$crashes" | sort)
                     sed -n 's/.*Test unit written to .*\/\([^/]*\)$/\1/p' "$log"; } |
                   grep -E '^(crash|leak|timeout|oom)-' | sort -u || true)
  n_crash=$(grep -c . <<<"$new_artifacts")
  # The last status line: "#N DONE cov: C ft: F corp: ..." or, after a crash, the last "#N ...".
  status_line=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  new_units=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  [[ -n $execs ]] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$status_line")
  [[ -n $eps ]] || eps=$(sed -n 's/.*exec\/s: *\([0-9]*\).*/\1/p' <<<"$status_line")
  cov=$(sed -n 's/.*cov: *\([0-9]*\).*/\1/p' <<<"$status_line")
  ft=$(sed -n 's/.*ft: *\([0-9]*\).*/\1/p' <<<"$status_line")
  files=$(ls "$corpus" | wc -l)
  kb=$(du -sk "$corpus" | cut -f1)

  status=ok
  # (a UBSan report counts even when UBSAN_OPTIONS let the run go on)
  if ((rc != 0 || n_crash > 0)) || grep -q 'runtime error:' "$log"; then
    failed=1
    kind=$(grep -m1 -oE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer): [a-zA-Z-]+|runtime error: .*|deadly signal|timeout after [0-9]+ seconds|out-of-memory' "$log" | head -1)
    ((rc == 124 || rc == 137)) && kind="wedged (killed after $((seconds + timeout_s + 120))s)"
    status="FAILED rc=$rc${kind:+: $kind}"
    echo "fuzz: $t: $status"
    for a in $new_artifacts; do echo "fuzz:   artifact $crashes/$a"; done
    echo "fuzz:   log $log:"; grep -E -m10 'ERROR|SUMMARY|runtime error|#[0-9]+ 0x' "$log" | cut -c1-200 | sed 's/^/fuzz:     /'
  fi
  rows+=("$t|${execs:-?}|${eps:-?}|${cov:-?}|${ft:-?}|$files ($((kb))K)|${n_crash}|$status")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$seconds" "${execs:-}" \
    "${eps:-}" "${cov:-}" "${ft:-}" "$files" "${new_units:-}" "$n_crash" "$status" >>"$results"
done

echo
echo "fuzz: ${seconds}s per target, $(date -u '+%F %H:%M') UTC, corpus in $build/corpus, crashes in $build/crashes"
{
  echo "target|executions|exec/s|cov|ft|corpus|crashes|status"
  printf '%s\n' "${rows[@]}"
} | column -t -s '|'
exit $failed
