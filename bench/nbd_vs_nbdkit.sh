#!/usr/bin/env bash
# fio's nbd engine against Castor's NBD export of a RAM bdev and against `nbdkit memory`
# of the same size, in one run: 4 KiB random read and write at QD32. Prints both and
# the ratio (goal: Castor >= 1.5x nbdkit).
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
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

build/release/src/engine/castor-engine --cores 1 --grpc-listen 127.0.0.1:0 --metrics-listen none \
  --nbd-listen 127.0.0.1:0 --bdev "malloc:///m0?size_mb=$SIZE_MB" --nbd-export disk=m0 \
  --ready-file "$work/ready.json" --log-level warn >"$work/engine.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/ready.json" ]] && break; sleep 0.1; done
cport=$(jq -r .nbd_port "$work/ready.json")
# nbdkit 1.32 cannot report a port it picked: choose a free one.
while :; do
  nport=$(shuf -i 20000-60000 -n 1)
  ss -ltnH "sport = :$nport" | grep -q . || break
done
taskset -c 1 nbdkit --exit-with-parent -f -i 127.0.0.1 -p "$nport" memory "${SIZE_MB}M" >"$work/nbdkit.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do ss -ltnH "sport = :$nport" | grep -q . && break; sleep 0.1; done
[[ -n "$cport" && -n "$nport" ]] || { echo "a server did not start" >&2; cat "$work"/*.log >&2; exit 1; }

iops() {  # uri rw
  taskset -c 0 fio --name=b --ioengine=nbd --uri="$1" --rw="$2" --bs=4k --iodepth=32 --size="${SIZE_MB}m" \
    --runtime="$SECS" --time_based --output-format=json 2>/dev/null |
    sed -n '/^{/,$p' | jq -r '.jobs[0].read.iops + .jobs[0].write.iops'
}
printf "%-10s %14s %14s %7s\n" workload castor_iops nbdkit_iops ratio
for rw in randread randwrite; do
  c=$(iops "nbd://127.0.0.1:$cport/disk" "$rw")
  n=$(iops "nbd://127.0.0.1:$nport/" "$rw")
  printf "%-10s %14.0f %14.0f %7.2f\n" "$rw" "$c" "$n" "$(echo "$c / $n" | bc -l)"
done
echo "(goal: >= 1.5; server on CPU 1, fio on CPU 0)"
