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
# Two targets on CPU 1 (only the one under test is busy): the default reactor, and one
# whose io_uring interrupts it for every completion (--taskrun interrupt), the mode
# Castor used before 2026-11-26 and the fallback on old kernels.
serve() {  # NAME [args...]
  local n=$1
  shift
  taskset -c 1 $B/nvmfserve/castor-nvmf-serve --bdev "malloc:///$n?size_mb=1024" --nqn $nqn --port 0 \
    --port-file "$work/$n.port" --cores 1 --log-level warn "$@" >"$work/$n.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do [[ -s "$work/$n.port" ]] && break; sleep 0.1; done
}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
serve m0
serve m2 --taskrun interrupt
pid=${pids[0]} port=$(cat "$work/m0.port") iport=$(cat "$work/m2.port")
printf "%-10s %4s %11s %11s %12s %7s %8s %8s %9s\n" workload qd nvmf_iops inproc_iops nvmf/inproc \
  intr_iops nvmf_p99 intr_p99 inproc_p99
for wl in randread randwrite; do
  for qd in 1 32; do
    n=$($B/nvmfperf/castor-perf -r 127.0.0.1:$port -n $nqn -w $wl -q $qd -t "$SECS" --cores 0 --json)
    i=$($B/nvmfperf/castor-perf -r 127.0.0.1:$iport -n $nqn -w $wl -q $qd -t "$SECS" --cores 0 \
      --taskrun interrupt --json)
    l=$($B/bdevperf/castor-bdevperf --cores 1 --bdev "malloc:///m1?size_mb=1024" -w $wl -q $qd -t "$SECS" --json)
    ni=$(jq -r .iops <<<"$n") li=$(jq -r .iops <<<"$l") ii=$(jq -r .iops <<<"$i")
    printf "%-10s %4s %11.0f %11.0f %12.3f %11.0f %8.1f %8.1f %9.1f\n" $wl $qd "$ni" "$li" \
      "$(echo "$ni / $li" | bc -l)" "$ii" "$(jq -r .lat_p99_us <<<"$n")" "$(jq -r .lat_p99_us <<<"$i")" \
      "$(jq -r .lat_p99_us <<<"$l")"
  done
done
echo "(p99 in us; intr = both sides with --taskrun interrupt; SPDK anchor: ~400 K at QD32, ~55 K at QD1)"
echo "target idle CPU over 5 s (should be ~0):"
t0=$(awk '{print $14+$15}' /proc/$pid/stat); sleep 5; t1=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "  $(( (t1 - t0) )) ticks of $(getconf CLK_TCK)/s"
