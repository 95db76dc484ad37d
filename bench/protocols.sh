#!/usr/bin/env bash
# One castor-engine, its three front ends side by side: IOPS, p99 latency and the engine's
# CPU time per I/O, for 4 KiB random read and write at QD1 and QD32, over NVMe/TCP
# (castor-perf), NBD (fio's nbd engine, libnbd) and iSCSI (fio's libiscsi engine). The
# engine runs one reactor under `taskset -c CPU_TARGET` (default 1) with its default idle
# policy, each protocol exporting its own 1 GiB RAM bdev (written through once first); the
# client runs on CPU_HOST (default 0). The engine's CPU time is the sum over its threads
# (/proc/PID/task/*/schedstat) across the run, polling included. ROUNDS rounds alternate
# over every point; the table shows medians. Each client is a different program, so the
# rows compare the protocols as a user reaches them, not the engine's front ends alone.
#
#   bench/protocols.sh [seconds=5] [rounds=3]
#   env: CPU_TARGET=1 CPU_HOST=0 ENGINE_ARGS="" PROTOCOLS="nvmf nbd iscsi" QDS="1 32"
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${NO_SETUP:-} ]] || scripts/setup.sh release >&2
SECS=${1:-5}
ROUNDS=${2:-3}
CPU_TARGET=${CPU_TARGET:-1}
CPU_HOST=${CPU_HOST:-0}
PROTOCOLS=${PROTOCOLS:-nvmf nbd iscsi}
QDS=${QDS:-1 32}
B=build/release
SIZE_MB=1024
# shellcheck source=bench/lib/fio-libiscsi.sh
source bench/lib/fio-libiscsi.sh
[[ " $PROTOCOLS " != *" iscsi "* ]] || fio_iscsi=$(fio_libiscsi_engine)
work=$(mktemp -d /tmp/castor-protocols.XXXXXX)
engine_pid=""
cleanup() {
  if [[ -n $engine_pid ]]; then
    kill -TERM "$engine_pid" 2>/dev/null || true
    wait "$engine_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC2086
taskset -c "$CPU_TARGET" $B/src/engine/castor-engine --reactors 1 --grpc-listen 127.0.0.1:0 \
  --metrics-listen none --nvmf-listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 --iscsi-listen 127.0.0.1:0 \
  --state-dir "$work/state" --ready-file "$work/ready.json" --log-level warn \
  --bdev "malloc:///mn?size_mb=$SIZE_MB" --bdev "malloc:///mb?size_mb=$SIZE_MB" \
  --bdev "malloc:///mi?size_mb=$SIZE_MB" --nbd-export disk=mb --iscsi-export iqn.2026-12.io.castor:bench=mi \
  ${ENGINE_ARGS:-} >"$work/engine.log" 2>&1 &
engine_pid=$!
for _ in $(seq 100); do [[ -s $work/ready.json ]] && break; sleep 0.1; done
[[ -s $work/ready.json ]] || { cat "$work/engine.log" >&2; exit 1; }
ready() { jq -r "$1" "$work/ready.json"; }
ctl() { $B/src/cli/castorctl -e "127.0.0.1:$(ready .grpc_port)" "$@"; }
nvmf_uri=$(ctl -o json nvmf share mn | jq -r '.uris[0]')
nqn=${nvmf_uri##*/}
nqn=${nqn%%\?*}
nvmf_port=$(ready '.nvmf_ports[0]')
nbd_uri="nbd://127.0.0.1:$(ready .nbd_port)/disk"
iscsi_file="iscsi\\://127.0.0.1\\:$(ready .iscsi_port)/iqn.2026-12.io.castor\\:bench/0"

# The engine's CPU time so far, in ns, over all its threads.
engine_ns() { cat /proc/"$engine_pid"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }

# drive PROTOCOL RW QD SECS -> "IOPS P99_US" (RW: randread or randwrite of 4 KiB; or fill:
# every block written once with 128 KiB writes)
drive() {
  local p=$1 rw=$2 qd=$3 secs=$4
  case $p in
    nvmf)
      local a=(-w "$rw" -b 4096 -t "$secs")
      [[ $rw == fill ]] && a=(-w write -b 131072 -t "$((SIZE_MB / 512 + 1))" --size-mb "$SIZE_MB")
      taskset -c "$CPU_HOST" $B/src/tools/nvmfperf/castor-perf -r "127.0.0.1:$nvmf_port" -n "$nqn" \
        "${a[@]}" -q "$qd" --cores "$CPU_HOST" --json | jq -r '"\(.iops) \(.lat_p99_us)"'
      ;;
    nbd | iscsi)
      local eng=(--ioengine=nbd --uri="$nbd_uri") a=(--rw="$rw" --bs=4k --runtime="$secs" --time_based)
      [[ $p == iscsi ]] && eng=(--ioengine=external:"$fio_iscsi" --filename="$iscsi_file")
      [[ $rw == fill ]] && a=(--rw=write --bs=128k)
      taskset -c "$CPU_HOST" fio --name=b "${eng[@]}" "${a[@]}" --iodepth="$qd" \
        --size="${SIZE_MB}m" --output-format=json 2>/dev/null |
        sed -n '/^{/,$p' | jq -r '.jobs[0] | (if .read.io_bytes > 0 then .read else .write end) |
          "\(.iops) \((.clat_ns.percentile["99.000000"] // 0) / 1000)"'
      ;;
  esac
}

echo "castor-engine pid $engine_pid: one reactor on CPU $CPU_TARGET (taskset -c $CPU_TARGET --reactors 1 ${ENGINE_ARGS:-});" \
  "clients on CPU $CPU_HOST; 1 GiB RAM bdev per protocol; ${SECS}s per point, $ROUNDS rounds, medians"
for p in $PROTOCOLS; do
  drive "$p" fill 16 0 >/dev/null  # every block written once
done
results=$work/results.jsonl
for round in $(seq "$ROUNDS"); do
  for p in $PROTOCOLS; do
    for rw in randread randwrite; do
      for qd in $QDS; do
        t0=$(engine_ns)
        read -r iops p99 < <(drive "$p" "$rw" "$qd" "$SECS")
        t1=$(engine_ns)
        jq -nc --arg p "$p" --arg rw "$rw" --argjson qd "$qd" --argjson iops "$iops" --argjson p99 "$p99" \
          --argjson ns "$((t1 - t0))" --argjson secs "$SECS" \
          '{p: $p, rw: $rw, qd: $qd, iops: $iops, p99: $p99,
            cpu_pct: ($ns / ($secs * 1e7)), us_per_io: (if $iops > 0 then $ns / 1000 / ($iops * $secs) else 0 end)}' >>"$results"
      done
    done
  done
done

printf "%-7s %-10s %3s %10s %9s %8s %10s %s\n" proto workload qd iops p99_us cpu_pct us_cpu/io rounds
jq -rs '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  group_by([.p, .rw, .qd]) | .[] |
  [.[0].p, .[0].rw, .[0].qd, (map(.iops) | median), (map(.p99) | median), (map(.cpu_pct) | median),
   (map(.us_per_io) | median), (map(.iops | floor | tostring) | join("/"))] | @tsv' "$results" |
  awk -F'\t' '{printf "%-7s %-10s %3s %10.0f %9.1f %8.1f %10.2f %s\n", $1, $2, $3, $4, $5, $6, $7, $8}'
echo "(us_cpu/io = the engine's CPU time, all threads, over the I/Os of the run; time spent polling"
echo " for the next request counts: at QD1 the reactor polls between requests, see docs/reactor.md)"
