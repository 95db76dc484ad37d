#!/usr/bin/env bash
# The replicated path over the network, on this host: three castor-engines (A, B, C), each
# with a pool on a RAM disk (a pre-faulted malloc bdev) holding one thick replica. A
# volume (a nexus on A) is built over 1, 2 and 3 replicas: A's own (bdev:///rA) and B's
# and C's reached over NVMe/TCP (nvmf://). The nexus is published over NVMe/TCP and
# driven by castor-perf: 4 KiB randwrite and randread at QD1 and QD32, 128 KiB sequential
# write at QD32. For each replica count: IOPS, p50/p99, the ratio to 1 replica and every
# engine's CPU time per I/O. Then a replica is rebuilt over NVMe/TCP (A's replica the
# source, C's the destination) into a 2-replica volume, alone and under 4 KiB randwrite
# QD32 (application IOPS during the rebuild against before it, from the nexus's own
# write counter), and once more with the rebuild throttled (rate_mb_s asked against got).
#
#   bench/replication.sh [seconds=5] [rounds=1]
#   env: REPLICA_MB=4096 (every replica and the rebuilt one; ~3.1x that of RAM in all)
#        CPU_A=1 CPU_B=0 CPU_C=0 CPU_HOST=0 (each engine runs one reactor, pinned by taskset)
#        RATE_MB_S (the throttled rebuild; default half the unthrottled rate), ENGINE_ARGS,
#        NEXUS_OPTS="KEY=VALUE ..." (every nexus's options, e.g. parallel_segments=8)
#        KEEP=1 keeps the work directory (logs)
#        REBUILD_ONLY=1 skips the 1/2/3-replica table (ratio2 and ratio3 print n/a)
# Last line: ratio2=<x> ratio3=<x> rebuild_gib_s=<x> rebuild_under_load_app_ratio=<x>
# (ratios of 4 KiB randwrite QD32 IOPS to 1 replica; medians over the rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${NO_SETUP:-} ]] || scripts/setup.sh release >&2
SECS=${1:-5}
ROUNDS=${2:-1}
REPLICA_MB=${REPLICA_MB:-4096}
CPU_A=${CPU_A:-1} CPU_B=${CPU_B:-0} CPU_C=${CPU_C:-0} CPU_HOST=${CPU_HOST:-0}
B=build/release
PERF=$B/src/tools/nvmfperf/castor-perf
work=$(mktemp -d /tmp/castor-replbench.XXXXXX)
declare -A pid grpc nvmf cpu=([A]=$CPU_A [B]=$CPU_B [C]=$CPU_C)
bg=()  # other processes started here (castor-perf in the background)

cleanup() {
  local p
  for p in "${bg[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${bg[@]}" "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n ${KEEP:-} ]]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
die() { echo "replication.sh: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

# Every port is chosen by the engine (port 0 on 127.0.0.1) and read from its ready file.
start_engine() {
  local n=$1
  # shellcheck disable=SC2086
  taskset -c "${cpu[$n]}" $B/src/engine/castor-engine --reactors 1 --grpc-listen 127.0.0.1:0 \
    --metrics-listen none --nvmf-listen 127.0.0.1:0 --state-dir "$work/state-$n" \
    --ready-file "$work/$n.ready" --log-level warn ${ENGINE_ARGS:-} >"$work/$n.log" 2>&1 &
  pid[$n]=$!
  for _ in $(seq 100); do [[ -s $work/$n.ready ]] && break; sleep 0.1; done
  [[ -s $work/$n.ready ]] || die "engine $n did not start"
  grpc[$n]=$(jq -r .grpc_port "$work/$n.ready")
  nvmf[$n]=$(jq -r '.nvmf_ports[0]' "$work/$n.ready")
}
c() { local n=$1; shift; $B/src/cli/castorctl -e "127.0.0.1:${grpc[$n]}" "$@"; }

# A pool on a RAM disk with room for one thick replica of REPLICA_MB (plus metadata).
make_pool() {
  local n=$1
  c "$n" pool create "p$n" --disk "malloc:///d$n?size_mb=$((REPLICA_MB + 64))" >/dev/null ||
    die "pool on $n"
}
# replica ENGINE NAME -> the child URI: bdev:///NAME on A, nvmf://... elsewhere.
replica() {
  local n=$1 r=$2
  c "$n" replica create "p$n" "$r" --size "${REPLICA_MB}MiB" >/dev/null || die "replica $r on $n"
  if [[ $n == A ]]; then echo "bdev:///$r"; return; fi
  local u
  u=$(c "$n" -o json replica share "$r" | jq -r '.uris[0]') || die "share $r on $n"
  echo "$u?name=nx-$r"
}

log "starting engines A (CPU $CPU_A), B (CPU $CPU_B), C (CPU $CPU_C); pools on ${REPLICA_MB} MiB RAM disks"
for n in A B C; do start_engine $n; make_pool $n; done
uA=$(replica A rA)
uB=$(replica B rB)
uC=$(replica C rC)

# perf NQN WORKLOAD BS QD [ARGS...] -> castor-perf's JSON (CPU of A, B, C included)
perf() {
  local nqn=$1 wl=$2 bs=$3 qd=$4
  shift 4
  taskset -c "$CPU_HOST" $PERF -r "127.0.0.1:${nvmf[A]}" -n "$nqn" -w "$wl" -b "$bs" -q "$qd" \
    --cores "$CPU_HOST" --cpu-pid "${pid[A]}" --cpu-pid "${pid[B]}" --cpu-pid "${pid[C]}" --json "$@"
}
# nexus NAME CHILD... [-- OPTS...] ; prints the NQN it is published under
nexus_up() {
  local name=$1
  shift
  local args=()
  for u in "$@" ${NEXUS_OPTS:-}; do
    if [[ $u != *://* ]]; then args+=(--opt "$u"); else args+=(--child "$u"); fi
  done
  c A nexus create "$name" "${args[@]}" >/dev/null || die "nexus create $name"
  local puri
  puri=$(c A nexus publish "$name" --protocol nvmf) || die "publish $name"
  echo "${puri##*/}"
}
nexus_down() {
  c A nexus unpublish "$1" --force >/dev/null || die "unpublish $1"
  c A nexus destroy "$1" >/dev/null || die "destroy $1"
}

# ---- 1, 2 and 3 replicas ----
results=$work/results.jsonl
workloads=("randwrite 4096 1" "randwrite 4096 32" "randread 4096 1" "randread 4096 32" "write 131072 32")
children=("$uA" "$uB" "$uC")
ratio2=n/a ratio3=n/a
for round in $(seq "$ROUNDS"); do
  [[ -z ${REBUILD_ONLY:-} ]] || break
  for nrep in 1 2 3; do
    name=v$nrep-$round
    nqn=$(nexus_up "$name" "${children[@]:0:nrep}")
    for w in "${workloads[@]}"; do
      read -r wl bs qd <<<"$w"
      log "round $round: $nrep replica(s), $wl ${bs} QD$qd"
      perf "$nqn" "$wl" "$bs" "$qd" -t "$SECS" |
        jq -c --argjson n "$nrep" --argjson r "$round" '{n: $n, round: $r, wl: .workload,
          bs: .block_size, qd: .queue_depth, iops, p50: .lat_p50_us, p99: .lat_p99_us, errors,
          a: .target_cpu[0].cpu_us_per_io, b: .target_cpu[1].cpu_us_per_io,
          c: .target_cpu[2].cpu_us_per_io}' >>"$results" || die "castor-perf"
    done
    nexus_down "$name"
  done
done

if [[ -z ${REBUILD_ONLY:-} ]]; then
echo "== 1, 2 and 3 replicas: nexus on A (CPU $CPU_A), replicas on A, B (CPU $CPU_B), C (CPU $CPU_C) over"
echo "   NVMe/TCP, castor-perf on CPU $CPU_HOST; ${REPLICA_MB} MiB thick replicas on RAM pools; ${SECS}s per"
echo "   point, medians of $ROUNDS round(s); CPU = µs of each engine's threads per application I/O"
summary=$(jq -rs '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def r2: . * 100 | round / 100;
  (group_by([.wl, .bs, .qd]) | map({key: "\(.[0].wl) \(.[0].bs) \(.[0].qd)",
     value: (group_by(.n) | map({n: .[0].n, iops: (map(.iops) | median)}))}) | from_entries) as $one |
  group_by([.wl, .bs, .qd, .n]) | .[] |
  (.[0] | "\(.wl) \(.bs) \(.qd)") as $k |
  (map(.iops) | median) as $iops |
  ($one[$k] | map(select(.n == 1))[0].iops) as $base |
  [.[0].wl, .[0].bs, .[0].qd, .[0].n, ($iops | floor), (map(.p50) | median | r2),
   (map(.p99) | median | r2), ($iops / $base | r2), (map(.a) | median | r2),
   (map(.b) | median | r2), (map(.c) | median | r2), (map(.errors) | add)] | @tsv' "$results")
{
  printf "workload\tbs\tqd\treplicas\tIOPS\tp50_us\tp99_us\tratio_to_1\tA_us/io\tB_us/io\tC_us/io\terrors\n"
  echo "$summary"
} | column -t -s $'\t'
ratio() { awk -F'\t' -v n="$1" '$1 == "randwrite" && $2 == 4096 && $3 == 32 && $4 == n {print $8}' <<<"$summary"; }
ratio2=$(ratio 2)
ratio3=$(ratio 3)
fi

# ---- Rebuild over NVMe/TCP ----
# wait_rebuild NEXUS CHILD -> "bytes elapsed_ms skipped_blocks" once completed
wait_rebuild() {
  local j st
  for _ in $(seq 6000); do
    j=$(c A -o json rebuild stats "$1" "$2") || die "rebuild stats"
    st=$(jq -r .state <<<"$j")
    case $st in
      completed) jq -r '"\(.blocks_done * .block_size) \(.elapsed_ms) \(.blocks_skipped)"' <<<"$j"; return ;;
      running | paused) sleep 0.2 ;;
      *) die "rebuild of $2 is $st: $(jq -r .error <<<"$j")" ;;
    esac
  done
  die "rebuild of $2 did not finish"
}
# Application writes the nexus completed so far (its bdev statistics).
app_writes() { c A -o json bdev stats "$1" | jq '.[0].ops[] | select(.op == "write") | .ops'; }
gib_s() { awk -v b="$1" -v ms="$2" 'BEGIN {printf "%.3f", b / 1073741824 / (ms / 1000)}'; }

log "rebuild alone: $REPLICA_MB MiB from A's replica to C's over NVMe/TCP"
nqn=$(nexus_up vr "$uA" "$uB")
c A nexus add-child vr "$uC" >/dev/null || die "add-child"
read -r bytes ms skipped < <(wait_rebuild vr "$uC")
rebuild_gib_s=$(gib_s "$bytes" "$ms")
alone_mib_s=$(awk -v b="$bytes" -v ms="$ms" 'BEGIN {printf "%d", b / 1048576 / (ms / 1000)}')
echo "== rebuild over NVMe/TCP, ${REPLICA_MB} MiB (A -> C), 2-replica volume, no load:"
echo "   $bytes bytes in $ms ms = $rebuild_gib_s GiB/s ($alone_mib_s MiB/s), $skipped blocks skipped"

log "rebuild under 4 KiB randwrite QD32"
c A nexus remove-child vr "$uC" >/dev/null || die "remove-child"
pre=$SECS
perf "$nqn" randwrite 4096 32 -t 3600 >"$work/load.json" 2>"$work/load.err" &
load=$!
bg+=("$load")
sleep 1
w0=$(app_writes vr)
t0=$(date +%s.%N)
sleep "$pre"
w1=$(app_writes vr)
t1=$(date +%s.%N)
c A nexus add-child vr "$uC" >/dev/null || die "add-child under load"
w2=$(app_writes vr)
t2=$(date +%s.%N)
read -r lbytes lms lskipped < <(wait_rebuild vr "$uC")
w3=$(app_writes vr)
t3=$(date +%s.%N)
sleep "$pre"
w4=$(app_writes vr)
t4=$(date +%s.%N)
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true
bg=()
read -r before during after < <(awk -v w0="$w0" -v w1="$w1" -v w2="$w2" -v w3="$w3" -v w4="$w4" \
  -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" -v t4="$t4" \
  'BEGIN {printf "%.0f %.0f %.0f\n", (w1 - w0) / (t1 - t0), (w3 - w2) / (t3 - t2), (w4 - w3) / (t4 - t3)}')
app_ratio=$(awk -v a="$during" -v b="$before" 'BEGIN {printf "%.2f", a / b}')
load_gib_s=$(gib_s "$lbytes" "$lms")
echo "== the same rebuild under 4 KiB randwrite QD32 (castor-perf on CPU $CPU_HOST):"
echo "   $lbytes bytes in $lms ms = $load_gib_s GiB/s, $lskipped blocks skipped"
echo "   application write IOPS: before $before (2 replicas), during $during, after $after (3 replicas)"
echo "   during/before $app_ratio, during/after $(awk -v a="$during" -v b="$after" 'BEGIN {printf "%.2f", a / b}')"
nexus_down vr

rate=${RATE_MB_S:-$(( alone_mib_s / 2 > 0 ? alone_mib_s / 2 : 1 ))}
log "throttled rebuild: rate_mb_s=$rate"
nexus_up vt "$uA" "$uB" "rate_mb_s=$rate" >/dev/null
c A nexus add-child vt "$uC" >/dev/null || die "add-child throttled"
read -r tbytes tms _ < <(wait_rebuild vt "$uC")
got=$(awk -v b="$tbytes" -v ms="$tms" 'BEGIN {printf "%.1f", b / 1048576 / (ms / 1000)}')
echo "== throttled rebuild: rate_mb_s=$rate asked, $got MiB/s got ($(awk -v g="$got" -v r="$rate" 'BEGIN {printf "%.3f", g / r}') of it)"
nexus_down vt

echo "ratio2=$ratio2 ratio3=$ratio3 rebuild_gib_s=$rebuild_gib_s rebuild_under_load_app_ratio=$app_ratio"
