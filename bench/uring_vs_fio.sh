#!/usr/bin/env bash
# castor-bdevperf on a uring bdev against fio (ioengine=io_uring, O_DIRECT) on the same
# file, same block size and queue depth, in one run; prints both and the ratio.
# Also measures the malloc bdev (the in-process anchor: SPDK bdevperf does ~1.0-1.1 M
# 4 KiB random reads/s at QD32 on one core of this kind of machine).
#
#   bench/uring_vs_fio.sh [seconds=10] [rounds=2]
# Environment: BENCH_FILE (default /var/tmp/castor-bench.img), BENCH_SIZE_MB (1024),
# BENCH_CPU (the core both tools run on, default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release >&2
SECS=${1:-10}
ROUNDS=${2:-2}
FILE=${BENCH_FILE:-/var/tmp/castor-bench.img}
SIZE_MB=${BENCH_SIZE_MB:-1024}
CPU=${BENCH_CPU:-1}
PERF=build/release/src/tools/bdevperf/castor-bdevperf

if [[ ! -f "$FILE" || $(stat -c %s "$FILE") -ne $((SIZE_MB << 20)) ]]; then
  echo "preparing $FILE ($SIZE_MB MiB of written data)" >&2
  rm -f "$FILE"
  fio --name=fill --filename="$FILE" --size="${SIZE_MB}M" --rw=write --bs=1M --direct=1 \
    --ioengine=io_uring --iodepth=8 --output=/dev/null
fi

castor_iops() {  # workload
  "$PERF" --cores "$CPU" --bdev "uring://$FILE?direct=1" -w "$1" --bs 4096 --qd 32 -t "$SECS" --json |
    jq -r .iops
}
fio_iops() {  # rw
  fio --name=b --filename="$FILE" --rw="$1" --bs=4k --iodepth=32 --direct=1 --ioengine=io_uring \
    --runtime="$SECS" --time_based --cpus_allowed="$CPU" --output-format=json |
    jq -r '.jobs[0].read.iops + .jobs[0].write.iops'
}

printf "%-10s %-6s %12s %12s %7s\n" workload round castor_iops fio_iops ratio
for wl in randread; do
  tc=0
  tf=0
  for r in $(seq "$ROUNDS"); do
    c=$(castor_iops "$wl")
    f=$(fio_iops "$wl")
    printf "%-10s %-6s %12.0f %12.0f %7.3f\n" "$wl" "$r" "$c" "$f" "$(echo "$c / $f" | bc -l)"
    tc=$(echo "$tc + $c" | bc -l)
    tf=$(echo "$tf + $f" | bc -l)
  done
  printf "%-10s %-6s %12.0f %12.0f %7.3f   <- mean; goal >= 0.95\n" "$wl" all \
    "$(echo "$tc / $ROUNDS" | bc -l)" "$(echo "$tf / $ROUNDS" | bc -l)" "$(echo "$tc / $tf" | bc -l)"
done

echo
echo "in-process anchor (SPDK bdevperf malloc 4K randread QD32, one core: ~1.0-1.1 M IOPS)"
for b in "malloc:///m0?size_mb=1024" "null:///n0?size_mb=1024"; do
  "$PERF" --cores "$CPU" --bdev "$b" -w randread --bs 4096 --qd 32 -t "$SECS"
done
