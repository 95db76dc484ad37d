#!/usr/bin/env bash
# In one run: castor-perf against Castor's NVMe/TCP target serving a RAM bdev (target on
# one reactor on CPU 1, castor-perf on CPU 0), and the same RAM bdev in-process through
# castor-bdevperf on CPU 1; 4 KiB random read and write at QD1 and QD32. Prints both and
# the ratio. Anchor on this kind of machine: SPDK's target ~400 K IOPS at QD32, ~55 K at QD1.
#
#   bench/nvmf_vs_bdevperf.sh [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release >&2
SECS=${1:-5}
B=build/release/src/tools
work=$(mktemp -d /tmp/castor-nvmfbench.XXXXXX)
nqn=nqn.2026-11.io.castor:bench
taskset -c 1 $B/nvmfserve/castor-nvmf-serve --bdev "malloc:///m0?size_mb=1024" --nqn $nqn --port 0 \
  --port-file "$work/port" --reactors 1 --log-level warn >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [[ -s "$work/port" ]] && break; sleep 0.1; done
port=$(cat "$work/port")
printf "%-10s %4s %14s %14s %7s %12s %12s\n" workload qd nvmf_iops inproc_iops ratio nvmf_p99_us inproc_p99_us
for wl in randread randwrite; do
  for qd in 1 32; do
    n=$($B/nvmfperf/castor-perf -r 127.0.0.1:$port -n $nqn -w $wl -q $qd -t "$SECS" --cores 0 --json)
    l=$($B/bdevperf/castor-bdevperf --cores 1 --bdev "malloc:///m1?size_mb=1024" -w $wl -q $qd -t "$SECS" --json)
    ni=$(jq -r .iops <<<"$n") li=$(jq -r .iops <<<"$l")
    printf "%-10s %4s %14.0f %14.0f %7.3f %12.1f %12.1f\n" $wl $qd "$ni" "$li" "$(echo "$ni / $li" | bc -l)" \
      "$(jq -r .lat_p99_us <<<"$n")" "$(jq -r .lat_p99_us <<<"$l")"
  done
done
echo "target idle CPU over 5 s (should be ~0):"
t0=$(awk '{print $14+$15}' /proc/$pid/stat); sleep 5; t1=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "  $(( (t1 - t0) )) ticks of $(getconf CLK_TCK)/s"
