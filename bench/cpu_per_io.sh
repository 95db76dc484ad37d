#!/usr/bin/env bash
# The NVMe/TCP target's CPU against the load it is offered: castor-engine (one reactor,
# pinned with taskset to CPU_TARGET, default 1) shares a RAM bdev over NVMe/TCP, and
# castor-perf (CPU_HOST, default 0) offers 4 KiB I/O at fixed rates (--rate: open loop,
# the queue depth as a cap) of 1 K, 10 K and 40 K IOPS and at full speed (closed loop),
# at QD1 and QD32. For each point: the IOPS achieved, p50/p99 (from submission), and the
# engine's CPU time over the run (all its threads, from schedstat) as a share of a core
# and per I/O. ROUNDS rounds alternate over every point; the table shows medians.
#
#   bench/cpu_per_io.sh [seconds=5] [rounds=3]
#   env: WORKLOADS="randread randwrite" RATES="1000 10000 40000 0" QDS="1 32"
#        CPU_TARGET=1 CPU_HOST=0 ENGINE_ARGS="" (e.g. "--spin-us 0" or "--poll")
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${NO_SETUP:-} ]] || scripts/setup.sh release >&2
SECS=${1:-5}
ROUNDS=${2:-3}
WORKLOADS=${WORKLOADS:-randread randwrite}
RATES=${RATES:-1000 10000 40000 0}
QDS=${QDS:-1 32}
CPU_TARGET=${CPU_TARGET:-1}
CPU_HOST=${CPU_HOST:-0}
B=build/release
work=$(mktemp -d /tmp/castor-cpuperio.XXXXXX)
engine_pid=""
cleanup() {
  if [[ -n $engine_pid ]]; then
    kill -TERM "$engine_pid" 2>/dev/null || true
    wait "$engine_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --reactors 1 takes its CPU from taskset (--cores would pin it whatever taskset says).
# shellcheck disable=SC2086
taskset -c "$CPU_TARGET" $B/src/engine/castor-engine --reactors 1 --grpc-listen 127.0.0.1:0 \
  --metrics-listen none --nvmf-listen 127.0.0.1:0 --state-dir "$work/state" \
  --ready-file "$work/ready.json" --log-level warn ${ENGINE_ARGS:-} >"$work/engine.log" 2>&1 &
engine_pid=$!
for _ in $(seq 100); do [[ -s $work/ready.json ]] && break; sleep 0.1; done
[[ -s $work/ready.json ]] || { cat "$work/engine.log" >&2; exit 1; }
ctl() { $B/src/cli/castorctl -e "127.0.0.1:$(jq -r .grpc_port "$work/ready.json")" "$@"; }
ctl bdev create 'malloc:///ram0?size_mb=1024' >/dev/null
uri=$(ctl -o json nvmf share ram0 | jq -r '.uris[0]')
port=$(jq -r '.nvmf_ports[0]' "$work/ready.json")
nqn=${uri##*/}
nqn=${nqn%%\?*}
# Written through once, so reads touch written memory like writes do.
taskset -c "$CPU_HOST" $B/src/tools/nvmfperf/castor-perf -r "127.0.0.1:$port" -n "$nqn" -w write \
  -b 131072 -q 16 -t 60 --size-mb 1024 --cores "$CPU_HOST" --json >/dev/null &
fill=$!
sleep 2
kill "$fill" 2>/dev/null || true
wait "$fill" 2>/dev/null || true

echo "castor-engine pid $engine_pid: one reactor on CPU $CPU_TARGET (taskset -c $CPU_TARGET --reactors 1 ${ENGINE_ARGS:-});"
echo "castor-perf on CPU $CPU_HOST; 1 GiB RAM namespace; ${SECS}s per point, $ROUNDS rounds, medians"
t0=$(awk '{print $14+$15}' "/proc/$engine_pid/stat")
sleep 5
t1=$(awk '{print $14+$15}' "/proc/$engine_pid/stat")
echo "engine idle CPU over 5 s: $((t1 - t0)) ticks of $(getconf CLK_TCK)/s"

results=$work/results.jsonl
for round in $(seq "$ROUNDS"); do
  for wl in $WORKLOADS; do
    for qd in $QDS; do
      for rate in $RATES; do
        taskset -c "$CPU_HOST" $B/src/tools/nvmfperf/castor-perf -r "127.0.0.1:$port" -n "$nqn" -w "$wl" \
          -q "$qd" -t "$SECS" --rate "$rate" --cores "$CPU_HOST" --cpu-pid "$engine_pid" --json |
          jq -c --arg r "$round" '{round: $r, wl: .workload, qd: .queue_depth, rate: .offered_iops,
            iops, p50: .lat_p50_us, p99: .lat_p99_us, waited: .waited_for_slot,
            cpu_pct: .target_cpu[0].cpu_pct, us_per_io: .target_cpu[0].cpu_us_per_io}' >>"$results"
      done
    done
  done
done

printf "%-9s %3s %9s %10s %8s %8s %9s %10s %s\n" workload qd offered iops p50_us p99_us cpu_pct us_cpu/io rounds
jq -rs '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  group_by([.wl, .qd, (if .rate == 0 then 1e12 else .rate end)]) | .[] |
  [.[0].wl, .[0].qd, (if .[0].rate == 0 then "full" else .[0].rate end),
   (map(.iops) | median), (map(.p50) | median), (map(.p99) | median),
   (map(.cpu_pct) | median), (map(.us_per_io) | median),
   (map(.iops | floor | tostring) | join("/"))] | @tsv' "$results" |
  awk -F'\t' '{printf "%-9s %3s %9s %10.0f %8.1f %8.1f %9.1f %10.2f %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
echo "(offered 'full' = closed loop at the queue depth; cpu = the engine's threads over the run)"
