#!/usr/bin/env bash
# Castor's iSCSI target against tgt (the Linux user-space target) in one run, on the
# same RAM-backed size: Castor exports a malloc bdev, tgt a file on tmpfs (/dev/shm).
# fio's libiscsi engine drives 4 KiB random read and write at QD32 against each, and
# libiscsi's iscsi-perf adds a second random-read figure. Prints both and the ratio
# (goal: Castor >= 2x tgt). The client runs on CPU 0; the targets on CPU 1 ("separate"),
# then on the client's CPU 0 ("shared": storage sharing cores with its applications, where
# every cycle a target spends is one the client cannot).
#
#   bench/iscsi_vs_tgt.sh [seconds=10]
#
# Debian's fio 3.33 has no libiscsi engine; the first run builds it (bench/lib/fio-libiscsi.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${NO_SETUP:-} ]] || scripts/setup.sh release >&2
SECS=${1:-10}
SIZE_MB=1024
root=$PWD
work=$(mktemp -d /tmp/castor-iscsibench.XXXXXX)
pids=()
tgt_ctl=$((RANDOM % 1000 + 3000))
cleanup() {
  stop_servers
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/lib/fio-libiscsi.sh
source bench/lib/fio-libiscsi.sh
engine_so=$(fio_libiscsi_engine)

# Starts Castor and tgt with every thread on CPU $1 (their own state each time).
start_servers() {
  rm -rf "$work/state"
  # Castor
  taskset -c "$1" build/release/src/engine/castor-engine --reactors 1 ${batch:+--sched-batch} --grpc-listen 127.0.0.1:0 --metrics-listen none \
    --state-dir "$work/state" --bdev "malloc:///m0?size_mb=$SIZE_MB&blk_size=512" --iscsi-listen 127.0.0.1:0 \
    --iscsi-export iqn.2026-11.io.castor:bench=m0 --ready-file "$work/ready.$1.json" --log-level warn \
    >"$work/engine.$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [[ -s "$work/ready.$1.json" ]] && break; sleep 0.1; done
  cport=$(jq -r .iscsi_port "$work/ready.$1.json")

  # tgt on a tmpfs file of the same size
  tport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  truncate -s "${SIZE_MB}M" /dev/shm/castor-iscsibench-$$.img
  ${batch:+chrt -b 0} taskset -c "$1" tgtd -f --iscsi "portal=127.0.0.1:$tport" -C "$tgt_ctl" >"$work/tgtd.$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do tgtadm -C "$tgt_ctl" --lld iscsi --op show --mode sys >/dev/null 2>&1 && break; sleep 0.1; done
  tgtadm -C "$tgt_ctl" --lld iscsi --op new --mode target --tid 1 -T iqn.2024-01.bench.tgt:lun1
  tgtadm -C "$tgt_ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b /dev/shm/castor-iscsibench-$$.img
  tgtadm -C "$tgt_ctl" --lld iscsi --op bind --mode target --tid 1 -I ALL

  curl="iscsi://127.0.0.1:$cport/iqn.2026-11.io.castor:bench/0"
  turl="iscsi://127.0.0.1:$tport/iqn.2024-01.bench.tgt:lun1/1"
}
stop_servers() {
  tgtadm -C "$tgt_ctl" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
  tgtadm -C "$tgt_ctl" --op delete --mode system >/dev/null 2>&1 || true
  sleep 0.2
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  pids=()
  rm -f /dev/shm/castor-iscsibench-$$.img
}

fio_iops() {  # url rw -> "iops client_cpu%"
  local f=${1//:/\\:}
  taskset -c 0 fio --name=b --ioengine=external:"$engine_so" --filename="$f" --rw="$2" --bs=4k --iodepth=32 \
    --size="${SIZE_MB}m" --runtime="$SECS" --time_based --output-format=json 2>/dev/null |
    sed -n '/^{/,$p' | jq -r '"\(.jobs[0].read.iops + .jobs[0].write.iops) \(.jobs[0].usr_cpu + .jobs[0].sys_cpu)"'
}
perf_iops() {  # url
  timeout -s INT $((SECS + 2)) taskset -c 0 iscsi-perf -m 32 -b 8 -r -t "$SECS" "$1" 2>&1 | tr '\r' '\n' |
    grep -o 'iops average [0-9]*' | tail -1 | awk '{print $3}'
}
printf "%-32s %14s %14s %7s %12s\n" workload castor_iops tgt_iops ratio fio_cpu%
row() {  # name castor tgt [castor_fio_cpu tgt_fio_cpu]
  printf "%-32s %14.0f %14.0f %7.2f" "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)"
  [[ -n ${4:-} ]] && printf " %6.0f/%-5.0f" "$4" "$5"
  echo
}
for place in separate shared; do
  cpu=1
  [[ $place == shared ]] && cpu=0
  # On the client's core both servers run as SCHED_BATCH (Castor's --sched-batch, chrt for
  # the other): neither preempts the client on every request it sends.
  batch=
  [[ $place == shared ]] && batch=1
  start_servers "$cpu"
  # Precondition both: write every block once, so neither side pays first-touch page
  # faults (RAM bdev pages, tmpfs pages) inside the measurement.
  for u in "$curl" "$turl"; do
    taskset -c 0 fio --name=fill --ioengine=external:"$engine_so" --filename="${u//:/\\:}" --rw=write --bs=1m \
      --iodepth=4 --size="${SIZE_MB}m" >/dev/null 2>&1
  done
  for rw in randread randwrite; do
    read -r c cf < <(fio_iops "$curl" "$rw")
    read -r t tf < <(fio_iops "$turl" "$rw")
    row "fio $rw 4k QD32 $place" "$c" "$t" "$cf" "$tf"
  done
  c=$(perf_iops "$curl")
  t=$(perf_iops "$turl")
  [[ -n $c && -n $t ]] && row "iscsi-perf randread $place" "$c" "$t"
  stop_servers
done
echo "(goal: >= 2; client on CPU 0, targets on CPU 1 (separate) or 0 (shared, as SCHED_BATCH); fio_cpu% = the"
echo " client's own CPU against Castor/tgt: near 100 with separate cores means the client sets the IOPS)"
