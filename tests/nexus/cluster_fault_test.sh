#!/usr/bin/env bash
# Fault tests of a 3-child nexus across three real engine processes on loopback: engine A
# holds the nexus and its local child, engines B and C each share a replica over
# NVMe-oF/TCP. castor-perf runs a verifying workload against the nexus published over
# NVMe-oF while one fault is injected:
#   error    B's replica fails every I/O (fault bdev)
#   hang     C's replica stops answering (fault bdev hang) past the child I/O timeout
#   kill     engine B is killed with SIGKILL
#   restart  engine C is killed and started again (its replica is gone)
# Each must give no application error and no verify mismatch, a degraded nexus with the
# right child faulted; then a new child is added and rebuilt, the faulted child removed,
# and every child must compare equal block for block.
#   unclean  a nexus on A over replicas on B and C only, under randwrite at queue depth
#            128; C drops its last 64 writes (acknowledged, not written) and is then
#            stopped (SIGSTOP) so its writes lag, A is killed with SIGKILL, and
#            every socket of C's NVMe/TCP port is destroyed (ss -K) so the dead nexus's
#            buffered writes can never land; C continues. A restarts with the same state
#            and the nexus is re-created over the same two children: it must resync C
#            from B, after which B and C are equal block for block.
#   cluster_fault_test.sh castor-engine castorctl castor-perf [scenario...]
set -uo pipefail
engine=$1 ctl=$2 perf=$3
shift 3
scenarios=("${@:-error hang kill restart unclean}")
read -r -a scenarios <<<"${scenarios[*]}"
work=$(mktemp -d /tmp/castor-cluster.XXXXXX)
size_mb=32
declare -A pid grpc nvmf
fail=0

log() { echo "[$(date +%T)] $*"; }
die() { echo "FAIL: $*"; fail=1; }

cleanup() {
  for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null; done
  wait 2>/dev/null
  if ((fail)); then
    for f in "$work"/*.log; do echo "--- $f"; tail -30 "$f"; done
  fi
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

# start_engine NAME [NVMF_PORT]
start_engine() {
  local n=$1 port=${2:-0}
  rm -f "$work/$n.ready"
  "$engine" --cores 0 --grpc-listen 127.0.0.1:0 --metrics-listen none --nvmf-listen "127.0.0.1:$port" \
    --state-dir "$work/state-$n" --ready-file "$work/$n.ready" --log-level info >>"$work/$n.log" 2>&1 &
  pid[$n]=$!
  for _ in $(seq 100); do [[ -s "$work/$n.ready" ]] && break; sleep 0.1; done
  [[ -s "$work/$n.ready" ]] || { die "engine $n did not start"; return 1; }
  grpc[$n]=$(jq -r .grpc_port "$work/$n.ready")
  nvmf[$n]=$(jq -r '.nvmf_ports[0]' "$work/$n.ready")
}
c() { local n=$1; shift; "$ctl" -e "127.0.0.1:${grpc[$n]}" "$@"; }

# replica NAME ENGINE -> prints the nvmf:// URI of a fresh replica (malloc behind a fault bdev)
replica() {
  local r=$1 n=$2
  c "$n" bdev create "malloc:///$r?size_mb=$size_mb" >/dev/null || return 1
  c "$n" bdev create "fault:///f$r?base=$r" >/dev/null || return 1
  local u
  u=$(c "$n" -o json nvmf share "f$r" | jq -r '.uris[0]') || return 1
  # Remote children give up reconnecting after 3 s, so a dead replica's parked I/O
  # drains and the child can be removed.
  echo "$u?ctrl_loss_timeout_ms=3000&reconnect_delay_ms=200&name=nx-$r"
}

# sums NEXUS: sha256 of every healthy child's data, one per line
child_sum() {
  local n=$1 bdev=$2 out=$work/sum.bin
  : >"$out"
  local chunk=$((2 * 1024 * 1024)) off=0 total=$((size_mb * 1024 * 1024))
  while ((off < total)); do
    c "$n" bdev read "$bdev" --offset "$off" --length "$chunk" --file "$work/chunk" >/dev/null || return 1
    cat "$work/chunk" >>"$out"
    off=$((off + chunk))
  done
  sha256sum <"$out" | cut -d' ' -f1
}

nexus_json() { c A -o json nexus show nx; }
child_field() { nexus_json | jq -r --arg u "$1" ".children[] | select(.uri == \$u) | .$2"; }

start_engine A && start_engine B && start_engine C || exit 1

seq_no=0
run_scenario() {
  local kind=$1
  seq_no=$((seq_no + 1))
  local s=$seq_no
  log "=== scenario $kind"
  c A bdev create "malloc:///a$s?size_mb=$size_mb" >/dev/null || { die "local child"; return; }
  local ub uc
  ub=$(replica "b$s" B) || { die "replica on B"; return; }
  uc=$(replica "c$s" C) || { die "replica on C"; return; }
  c A nexus create nx --size "${size_mb}MiB" --child "bdev:///a$s" --child "$ub" --child "$uc" \
    --opt child_io_timeout_ms=1500 >/dev/null || { die "nexus create"; return; }
  local puri nqn
  puri=$(c A nexus publish nx --protocol nvmf) || { die "publish"; return; }
  nqn=${puri##*/}
  [[ "$(nexus_json | jq -r .state)" == online ]] || die "nexus not online at start"

  "$perf" -r "127.0.0.1:${nvmf[A]}" -n "$nqn" -w randrw -t 7 -q 16 --verify --json >"$work/perf-$s.json" \
    2>"$work/perf-$s.err" &
  local perf_pid=$!
  sleep 2
  local victim
  case $kind in
    error) victim=$ub; c B fault inject "fb$s" --mode error --op all >/dev/null ;;
    hang) victim=$uc; c C fault inject "fc$s" --mode hang --op all >/dev/null ;;
    kill) victim=$ub; kill -9 "${pid[B]}"; wait "${pid[B]}" 2>/dev/null ;;
    restart)
      victim=$uc
      kill -9 "${pid[C]}"; wait "${pid[C]}" 2>/dev/null
      start_engine C "${nvmf[C]}" || return
      ;;
  esac
  wait $perf_pid
  local prc=$?
  local errs mism ios
  errs=$(jq -r .errors "$work/perf-$s.json" 2>/dev/null)
  mism=$(jq -r .verify_mismatches "$work/perf-$s.json" 2>/dev/null)
  ios=$(jq -r .ios "$work/perf-$s.json" 2>/dev/null)
  log "workload: rc=$prc ios=$ios errors=$errs mismatches=$mism"
  [[ $prc == 0 && $errs == 0 && $mism == 0 && ${ios:-0} -gt 0 ]] || die "$kind: the application saw errors ($(cat "$work/perf-$s.err"))"
  local st
  st=$(nexus_json | jq -r .state)
  [[ $st == degraded ]] || die "$kind: nexus is $st, not degraded"
  log "victim: $(child_field "$victim" state) ($(child_field "$victim" fault_reason))"
  [[ "$(child_field "$victim" state)" == faulted ]] || die "$kind: victim child is not faulted"
  case $kind in
    error) [[ "$(child_field "$victim" fault_reason)" == io_error ]] || die "error: reason $(child_field "$victim" fault_reason)" ;;
    hang)
      [[ "$(child_field "$victim" fault_reason)" == timed_out ]] || die "hang: reason $(child_field "$victim" fault_reason)"
      c C fault clear "fc$s" >/dev/null  # late completions must be ignored
      ;;
    kill) start_engine B || return ;;
  esac

  # Heal: a new replica on the engine that did not fail, rebuilt while I/O runs.
  local heal_engine=C healname="h$s"
  [[ $victim == "$uc" ]] && heal_engine=B
  local uh
  uh=$(replica "$healname" "$heal_engine") || { die "replica for healing"; return; }
  "$perf" -r "127.0.0.1:${nvmf[A]}" -n "$nqn" -w randwrite -t 3 -q 8 --verify --json >"$work/perf2-$s.json" 2>&1 &
  local p2=$!
  c A nexus add-child nx "$uh" >/dev/null || die "add-child"
  c A rebuild watch nx "$uh" --interval 0.5 >"$work/watch-$s.log" 2>&1 || die "$kind: rebuild did not complete: $(tail -2 "$work/watch-$s.log")"
  wait $p2 || die "$kind: workload during the rebuild failed: $(cat "$work/perf2-$s.json")"
  c A nexus remove-child nx "$victim" >/dev/null || die "$kind: remove the faulted child"
  st=$(nexus_json | jq -r .state)
  [[ $st == online ]] || die "$kind: nexus is $st after healing"

  # Every child equal, block for block: release them, then read each on its own engine.
  c A nexus unpublish nx >/dev/null || die "unpublish"
  c A nexus destroy nx --purge >/dev/null || die "$kind: destroy"
  local sums=() r e
  sums+=("$(child_sum A "a$s")")
  for r in "b$s:B" "c$s:C" "$healname:$heal_engine"; do
    e=${r#*:}
    r=${r%%:*}
    if [[ $r == "b$s" && $victim == "$ub" ]] || [[ $r == "c$s" && $victim == "$uc" ]]; then continue; fi
    c "$e" nvmf unshare "f$r" >/dev/null || die "$kind: unshare f$r"
    sums+=("$(child_sum "$e" "f$r")")
  done
  log "child checksums: ${sums[*]}"
  [[ ${#sums[@]} == 3 && -n ${sums[0]} ]] || die "$kind: could not read the children"
  for x in "${sums[@]}"; do [[ $x == "${sums[0]}" ]] || die "$kind: children differ"; done
}

run_unclean() {
  seq_no=$((seq_no + 1))
  local s=$seq_no ub uc
  log "=== scenario unclean"
  command -v ss >/dev/null || { die "unclean: ss (iproute2) is missing"; return; }
  ub=$(replica "b$s" B) || { die "replica on B"; return; }
  uc=$(replica "c$s" C) || { die "replica on C"; return; }
  # A child timeout longer than the stop, so C stays healthy in the dead nexus's eyes.
  c A nexus create nxu --size "${size_mb}MiB" --child "$ub" --child "$uc" --opt child_io_timeout_ms=10000 \
    >/dev/null || { die "unclean: nexus create"; return; }
  local puri nqn
  puri=$(c A nexus publish nxu --protocol nvmf) || { die "unclean: publish"; return; }
  nqn=${puri##*/}
  "$perf" -r "127.0.0.1:${nvmf[A]}" -n "$nqn" -w randwrite -t 20 -q 128 --verify --json \
    >"$work/perf-$s.json" 2>"$work/perf-$s.err" &
  local perf_pid=$!
  sleep 2
  # Whether the kill lands while C lags is a matter of timing (C's kernel may already have
  # taken the writes); so that the children surely differ when the nexus dies, C's
  # replica also acknowledges its last 64 writes without writing them, the divergence
  # an unclean end can leave, deterministically.
  c C fault inject "fc$s" --mode drop --op write --count 64 >/dev/null || die "unclean: inject"
  sleep 0.3
  kill -STOP "${pid[C]}"
  sleep 0.5
  kill -9 "${pid[A]}"
  wait "${pid[A]}" 2>/dev/null
  # Orphaned sockets on both ends: without this the kernel would still deliver the dead
  # nexus's buffered writes to C once it runs again.
  # (ss cannot destroy the listening socket and says so; the connections go.)
  ss -K dport = ":${nvmf[C]}" >/dev/null 2>&1 && ss -K sport = ":${nvmf[C]}" >/dev/null 2>&1 ||
    die "unclean: ss -K failed"
  [[ -z "$(ss -Htn state established "( dport = :${nvmf[C]} or sport = :${nvmf[C]} )")" ]] ||
    die "unclean: connections to C survived ss -K"
  kill -CONT "${pid[C]}"
  wait $perf_pid 2>/dev/null
  log "workload ended with the nexus's engine: $(jq -c '{ios, errors}' "$work/perf-$s.json" 2>/dev/null)"
  # A shared bdev is claimed: unshare to read it, then share it again (same NQN).
  shared_sum() {
    c "$1" nvmf unshare "$2" >/dev/null && child_sum "$1" "$2" && cp "$work/sum.bin" "$work/$2.$3.bin" &&
      c "$1" nvmf share "$2" >/dev/null
  }
  local before_b before_c
  before_b=$(shared_sum B "fb$s" before) && before_c=$(shared_sum C "fc$s" before) ||
    { die "unclean: read the replicas"; return; }
  local differ
  differ=$(cmp -l "$work/fb$s.before.bin" "$work/fc$s.before.bin" | awk '{print int(($1 - 1) / 4096)}' | uniq | wc -l)
  log "before the resync: the replicas differ in $differ of $((size_mb * 256)) blocks"
  ((differ > 0)) || die "unclean: the replicas do not differ before the resync (the test would prove nothing)"
  start_engine A "${nvmf[A]}" || return
  c A nexus create nxu --size "${size_mb}MiB" --child "$ub" --child "$uc" >/dev/null ||
    { die "unclean: nexus re-create"; return; }
  log "re-created: $(nexus_json_of nxu | jq -c '[.children[] | {uri: .uri | sub(".*replica-"; ""), state}]')"
  [[ "$(nexus_json_of nxu | jq -r --arg u "$ub" '.children[] | select(.uri == $u) | .state')" == healthy ]] ||
    die "unclean: B's replica should be the source"
  c A rebuild watch nxu "$uc" --interval 0.5 >"$work/watch-$s.log" 2>&1 ||
    die "unclean: C's replica was not resynced: $(tail -2 "$work/watch-$s.log")"
  # The resync may finish before the first look: the engine's log says it ran.
  grep -qF "nexus=nxu did not shut down cleanly" "$work/A.log" || die "unclean: the unclean end went unnoticed"
  grep -qF "nexus=nxu rebuild of $uc completed" "$work/A.log" || die "unclean: no completed resync of C's replica"
  c A nexus destroy nxu --purge >/dev/null || die "unclean: destroy"
  local after_b after_c
  after_b=$(shared_sum B "fb$s" after) && after_c=$(shared_sum C "fc$s" after) || { die "unclean: read the replicas"; return; }
  log "after the resync: B $after_b C $after_c"
  [[ $after_b == "$after_c" ]] || die "unclean: the replicas differ after the resync"
}

nexus_json_of() { c A -o json nexus show "$1"; }

for k in "${scenarios[@]}"; do
  if [[ $k == unclean ]]; then run_unclean; else run_scenario "$k"; fi
done
if ((fail)); then echo "cluster fault test: FAILED"; exit 1; fi
echo "cluster fault test: all scenarios passed (${scenarios[*]})"
