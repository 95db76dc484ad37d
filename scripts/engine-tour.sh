#!/usr/bin/env bash
# A tour of one castor-engine by hand (no control plane): create a RAM bdev and a file
# bdev through its API with castorctl and benchmark both; then make a pool on a file, a
# thin replica in it, share the replica over NVMe-oF and NBD, drive it over NVMe/TCP with
# Castor's own host (castor-perf, verifying data) and read it with libnbd's nbdinfo;
# export a third over iSCSI and look at it with libiscsi's iscsi-ls and
# iscsi-readcapacity16; stop cleanly.
#
#   engine-tour.sh [BUILD_DIR]      (default build/release)
# Environment: CASTOR_DEMO_SECONDS (per run, default 3), CASTOR_DEMO_DIR (where the
# file bdev goes, default /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

B=${1:-build/release}
ENGINE=$B/src/engine/castor-engine
CTL=$B/src/cli/castorctl
SECS=${CASTOR_DEMO_SECONDS:-3}
work=$(mktemp -d "${CASTOR_DEMO_DIR:-/var/tmp}/castor-demo.XXXXXX")
engine_pid=""

cleanup() {
  if [[ -n "$engine_pid" ]] && kill -0 "$engine_pid" 2>/dev/null; then
    kill -TERM "$engine_pid" 2>/dev/null || true
    wait "$engine_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Free ports are chosen by the engine (port 0) and reported in the ready file.
"$ENGINE" --reactors "$(nproc)" --grpc-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  --nvmf-listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 --iscsi-listen 127.0.0.1:0 \
  --ready-file "$work/ready.json" --log-level warn >"$work/engine.log" 2>&1 &
engine_pid=$!
for _ in $(seq 100); do
  [[ -s "$work/ready.json" ]] && break
  if ! kill -0 "$engine_pid" 2>/dev/null; then
    echo "castor: engine failed to start:" >&2
    cat "$work/engine.log" >&2
    exit 1
  fi
  sleep 0.1
done
grpc_port=$(jq -r .grpc_port "$work/ready.json")
metrics_port=$(jq -r .metrics_port "$work/ready.json")
ctl() { "$CTL" -e "127.0.0.1:$grpc_port" "$@"; }

echo "== castor-engine (pid $engine_pid, gRPC 127.0.0.1:$grpc_port, metrics http://127.0.0.1:$metrics_port/metrics)"
ctl engine info
echo
ctl bdev create 'malloc:///ram0?size_mb=256' >/dev/null
ctl bdev create "file://$work/disk0.img?size_mb=512" >/dev/null
ctl bdev list
echo

results="$work/results.jsonl"
run() {  # bdev workload bs qd
  echo "-- benchmark $1: $2 bs=$3 qd=$4 for ${SECS}s" >&2
  ctl -o json bdev perf "$1" --workload "$2" --bs "$3" --qd "$4" --time "$SECS" >>"$results"
}
run ram0 randread 4096 32
run ram0 randwrite 4096 32
run disk0.img write 131072 8   # fills the file so reads touch real blocks
run disk0.img randread 4096 32
run disk0.img randwrite 4096 32
echo
{
  echo "BDEV WORKLOAD BS QD IOPS MiB/s LAT_p50(us) LAT_p99(us) LAT_p99.9(us) ERRORS"
  jq -r '[.bdev, .workload, .block_size, .queue_depth, (.iops|floor), (.mib_s*10|floor/10),
          (.p50_us*10|floor/10), (.p99_us*10|floor/10), (.p999_us*10|floor/10), .errors] | @tsv' "$results"
} | column -t
echo
nvmf_port=$(jq -r '.nvmf_ports[0]' "$work/ready.json")
nbd_port=$(jq -r .nbd_port "$work/ready.json")
echo "== a pool with a thin replica shared over NVMe/TCP (port $nvmf_port) and a thick one over NBD (port $nbd_port)"
ctl pool create pool0 --disk "file://$work/pool0.img?size_mb=512" --cluster-size 4MiB >/dev/null
ctl replica create pool0 vol0 --size 256MiB --thin >/dev/null
ctl replica create pool0 vol1 --size 64MiB >/dev/null
ctl replica create pool0 vol2 --size 64MiB >/dev/null
ctl -o json replica share vol0 >"$work/share.json"
nqn=$(jq -r '.nqn' "$work/share.json")
ctl nbd export vol1 vol1 --description "thick replica in pool0" >/dev/null
ctl replica list
echo
ctl nvmf subsystems
echo
echo "-- castor-perf (Castor's NVMe/TCP host) against $nqn: 8 KiB mixed I/O, write + read-back verify, 3 s"
"$B"/src/tools/nvmfperf/castor-perf -r "127.0.0.1:$nvmf_port" -n "$nqn" -w randrw -b 8192 -q 16 -t 3 --verify
echo
echo "-- nbdinfo nbd://127.0.0.1:$nbd_port/vol1"
nbdinfo "nbd://127.0.0.1:$nbd_port/vol1" | grep -E 'export-size|can_flush|can_trim|description|block_size_pre' | sed 's/^/   /'
echo
iscsi_port=$(jq -r .iscsi_port "$work/ready.json")
iqn=$(ctl -o json iscsi export vol2 | jq -r .iqn)
echo "-- vol2 over iSCSI as $iqn: iscsi-ls, iscsi-readcapacity16"
iscsi-ls -s "iscsi://127.0.0.1:$iscsi_port" | sed 's/^/   /'
iscsi-readcapacity16 "iscsi://127.0.0.1:$iscsi_port/$iqn/0" | grep -E 'Total size|BLOCK LENGTH' | sed 's/^/   /'
echo
ctl pool list
echo
ctl iscsi unexport "$iqn" >/dev/null
ctl nbd unexport vol1 >/dev/null
ctl replica unshare vol0 >/dev/null
ctl bdev destroy disk0.img >/dev/null
ctl bdev destroy ram0 >/dev/null
kill -TERM "$engine_pid"
wait "$engine_pid"
rc=$?
engine_pid=""
echo "== castor-engine stopped cleanly (exit $rc)"
