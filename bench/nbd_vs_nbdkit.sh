#!/usr/bin/env bash
# fio's nbd engine against Castor's NBD export of a RAM bdev and against `nbdkit memory`
# of the same size, in one run: 4 KiB random read and write at QD32. Prints both and
# the ratio (goal: Castor >= 1.5x nbdkit), and each server's CPU time per I/O.
#
# Two placements, fio always on CPU 0:
#   separate  each server has CPU 1 to itself. fio's nbd engine (libnbd) needs its whole
#             core for ~100 K IOPS here, so these IOPS measure the client as much as
#             the servers.
#   shared    the server runs on fio's CPU 0, as on a node whose storage shares cores
#             with its applications: every cycle a server spends is one the client
#             cannot, so the IOPS show the servers' own cost.
# The CPU-per-I/O columns are each server's CPU time over the I/Os it served (with a
# shared core, kernel work is charged to whichever process was running). Castor runs with
# --spin-us 0 so that its CPU time is work, not the idle polling that would otherwise
# fill the gaps between requests (it serves the same IOPS either way).
#
#   bench/nbd_vs_nbdkit.sh [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release >&2
SECS=${1:-10}
SIZE_MB=1024
work=$(mktemp -d /tmp/castor-nbdbench.XXXXXX)
pids=()
cleanup() {
  stop_servers
  rm -rf "$work"
}
trap cleanup EXIT

# Starts Castor and nbdkit with every thread on CPU $1.
start_servers() {
  taskset -c "$1" build/release/src/engine/castor-engine --reactors 1 ${batch:+--sched-batch} --grpc-listen 127.0.0.1:0 --metrics-listen none \
    --nbd-listen 127.0.0.1:0 --bdev "malloc:///m0?size_mb=$SIZE_MB" --nbd-export disk=m0 --spin-us 0 \
    --ready-file "$work/ready.$1.json" --log-level warn >"$work/engine.log" 2>&1 &
  cpid=$!
  pids+=($cpid)
  for _ in $(seq 100); do [[ -s "$work/ready.$1.json" ]] && break; sleep 0.1; done
  cport=$(jq -r .nbd_port "$work/ready.$1.json")
  # nbdkit 1.32 cannot report a port it picked: choose a free one.
  while :; do
    nport=$(shuf -i 20000-60000 -n 1)
    ss -ltnH "sport = :$nport" | grep -q . || break
  done
  ${batch:+chrt -b 0} taskset -c "$1" nbdkit --exit-with-parent -f -i 127.0.0.1 -p "$nport" memory "${SIZE_MB}M" >"$work/nbdkit.log" 2>&1 &
  npid=$!
  pids+=($npid)
  for _ in $(seq 100); do ss -ltnH "sport = :$nport" | grep -q . && break; sleep 0.1; done
  [[ -n "$cport" && -n "$nport" ]] || { echo "a server did not start" >&2; cat "$work"/*.log >&2; exit 1; }
}
stop_servers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  pids=()
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, every thread
hz=$(getconf CLK_TCK)
# Prints "IOPS CPU-microseconds-per-I/O" of one fio run against uri, served by pid.
run() {  # uri rw pid
  local t0 t1 iops cpu
  t0=$(ticks "$3")
  read -r iops cpu < <(taskset -c 0 fio --name=b --ioengine=nbd --uri="$1" --rw="$2" --bs=4k --iodepth=32 \
    --size="${SIZE_MB}m" --runtime="$SECS" --time_based --output-format=json 2>/dev/null |
    sed -n '/^{/,$p' | jq -r '"\(.jobs[0].read.iops + .jobs[0].write.iops) \(.jobs[0].usr_cpu + .jobs[0].sys_cpu)"')
  t1=$(ticks "$3")
  echo "$iops $(echo "($t1 - $t0) * 1000000 / $hz / ($iops * $SECS)" | bc -l) $cpu"
}
printf "%-20s %12s %12s %7s %14s %14s %7s %12s\n" workload castor_iops nbdkit_iops ratio \
  castor_us/io nbdkit_us/io ratio fio_cpu%
for place in separate shared; do
  cpu=1
  [[ $place == shared ]] && cpu=0
  # On the client's core both servers run as SCHED_BATCH (Castor's --sched-batch, chrt for
  # the other): neither preempts the client on every request it sends.
  batch=
  [[ $place == shared ]] && batch=1
  start_servers "$cpu"
  # Precondition both: write every block once, so neither pays first-touch page faults
  # inside the measurement.
  for u in "nbd://127.0.0.1:$cport/disk" "nbd://127.0.0.1:$nport/"; do
    taskset -c 0 fio --name=fill --ioengine=nbd --uri="$u" --rw=write --bs=1m --iodepth=4 \
      --size="${SIZE_MB}m" >/dev/null 2>&1
  done
  for rw in randread randwrite; do
    read -r c cc cf < <(run "nbd://127.0.0.1:$cport/disk" "$rw" "$cpid")
    read -r n nc nf < <(run "nbd://127.0.0.1:$nport/" "$rw" "$npid")
    printf "%-20s %12.0f %12.0f %7.2f %14.2f %14.2f %7.2f %6.0f/%-5.0f\n" "$rw $place" "$c" "$n" \
      "$(echo "$c / $n" | bc -l)" "$cc" "$nc" "$(echo "$nc / $cc" | bc -l)" "$cf" "$nf"
  done
  stop_servers
done
echo "(goal: IOPS >= 1.5x; fio on CPU 0, servers on CPU 1 (separate) or 0 (shared, as SCHED_BATCH);"
echo " us/io = server CPU time per I/O; fio_cpu% = the client's own CPU against Castor/nbdkit:"
echo " near 100 with separate cores means the client, not the server, sets the IOPS)"
