#!/usr/bin/env bash
# The cluster demo (part of the main job): three castor-engines on this host, each with a
# pool on a file; a 3-way replicated volume (a nexus on engine A: its local replica plus
# the replicas of B and C over NVMe-oF/TCP) published over NVMe-oF. Data is written and
# verified, engine B is killed while an application (castor-perf) writes and verifies,
# B is restarted and a new replica there is added and rebuilt (progress shown), and the
# data is verified again, on the volume and on every replica.
#   cluster-demo.sh BUILD_DIR
set -euo pipefail
B=${1:-build/release}
ENGINE=$B/src/engine/castor-engine
CTL=$B/src/cli/castorctl
PERF=$B/src/tools/nvmfperf/castor-perf
work=$(mktemp -d "${CASTOR_DEMO_DIR:-/var/tmp}/castor-cluster.XXXXXX")
declare -A pid grpc nvmfp
vol_mb=128
data_mb=32

cleanup() {
  for n in "${!pid[@]}"; do kill -TERM "${pid[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_engine() {  # NAME CPU [extra args...]
  local n=$1 cpu=$2
  shift 2
  rm -f "$work/$n.ready"
  "$ENGINE" --cores "$cpu" --grpc-listen 127.0.0.1:0 --metrics-listen none --nvmf-listen 127.0.0.1:0 \
    --state-dir "$work/state-$n" --ready-file "$work/$n.ready" --log-level warn "$@" >>"$work/$n.log" 2>&1 &
  pid[$n]=$!
  for _ in $(seq 100); do [[ -s "$work/$n.ready" ]] && break; sleep 0.1; done
  [[ -s "$work/$n.ready" ]] || { echo "engine $n did not start:"; cat "$work/$n.log"; exit 1; }
  grpc[$n]=$(jq -r .grpc_port "$work/$n.ready")
  nvmfp[$n]=$(jq -r '.nvmf_ports[0]' "$work/$n.ready")
}
c() { local n=$1; shift; "$CTL" -e "127.0.0.1:${grpc[$n]}" "$@"; }

# replica ENGINE NAME -> its URIs as JSON
replica() {
  c "$1" replica create "pool$1" "$2" --size "${vol_mb}MiB" --thin >/dev/null
  c "$1" -o json replica share "$2"
}
sum_range() {  # ENGINE BDEV MB
  local out=$work/sum.bin off=0 chunk=$((2 << 20)) total=$(($3 << 20))
  : >"$out"
  while ((off < total)); do
    c "$1" bdev read "$2" --offset "$off" --length "$chunk" --file "$work/chunk" >/dev/null
    cat "$work/chunk" >>"$out"
    off=$((off + chunk))
  done
  sha256sum <"$out" | cut -c1-16
}

cpus=$(nproc)
echo "== three engines, each with a pool on a file"
idx=0
for n in A B C; do
  start_engine $n $((idx % cpus))
  idx=$((idx + 1))
  c $n pool create "pool$n" --disk "file://$work/pool$n.img?size_mb=512" --cluster-size 4MiB >/dev/null
  echo "   engine $n: pid ${pid[$n]}, gRPC ${grpc[$n]}, NVMe-oF ${nvmfp[$n]}"
done
c A replica create poolA vol0 --size "${vol_mb}MiB" --thin >/dev/null
ua=bdev:///vol0  # local to the nexus: no network hop
ub=$(replica B vol0 | jq -r '.uris[] | select(startswith("nvmf:"))')"?ctrl_loss_timeout_ms=3000&name=B-vol0"
uc=$(replica C vol0 | jq -r '.uris[] | select(startswith("nvmf:"))')"?ctrl_loss_timeout_ms=3000&name=C-vol0"
c A nexus create vol --size "${vol_mb}MiB" --child "$ua" --child "$ub" --child "$uc" --opt child_io_timeout_ms=2000 >/dev/null

echo "== ${data_mb} MiB of data written to the volume"
head -c $((data_mb << 20)) /dev/urandom >"$work/data"
for ((i = 0; i < data_mb / 2; i++)); do
  dd if="$work/data" of="$work/piece" bs=2M skip=$i count=1 status=none
  c A bdev write vol --offset $((i * 2))MiB --file "$work/piece" >/dev/null
done
want=$(sha256sum <"$work/data" | cut -c1-16)
echo "   data sha256 $want, read back $(sum_range A vol $data_mb)"
puri=$(c A nexus publish vol --protocol nvmf)
nqn=${puri##*/}
echo "== volume published: $puri"
c A nexus show vol
echo
echo "== an application writes and verifies (castor-perf, 64 MiB region after the data) while engine B is killed"
"$PERF" -r "127.0.0.1:${nvmfp[A]}" -n "$nqn" -w randrw -q 16 -t 6 --verify --offset-mb 64 --size-mb 64 &
perf_pid=$!
sleep 2
{ kill -9 "${pid[B]}" && wait "${pid[B]}"; } 2>/dev/null || true
echo "   killed engine B (pid ${pid[B]})"
wait "$perf_pid"
echo
c A nexus show vol
echo
echo "== engine B restarted (its pool re-imported); a new replica there joins the volume"
start_engine B $((1 % cpus)) --pool-import "file://$work/poolB.img"
un=$(replica B vol1 | jq -r '.uris[] | select(startswith("nvmf:"))')"?ctrl_loss_timeout_ms=3000&name=B-vol1"
c A nexus add-child vol "$un" >/dev/null
"$PERF" -r "127.0.0.1:${nvmfp[A]}" -n "$nqn" -w randwrite -q 8 -t 3 --verify --offset-mb 64 --size-mb 64 --json >"$work/load.json" &
load_pid=$!
c A rebuild watch vol "$un" --interval 0.2
wait "$load_pid"
echo "   application during the rebuild: $(jq -r '"\(.ios) I/Os, \(.errors) errors, \(.verify_mismatches) mismatches"' "$work/load.json")"
alloc() { c "$1" -o json replica list | jq -r --arg r "$2" '.[] | select(.name == $r) | .allocated_bytes / 1048576 | tostring + " MiB"'; }
echo "   thin replicas, allocated: A vol0 $(alloc A vol0), B vol1 (rebuilt) $(alloc B vol1) of ${vol_mb} MiB"
c A nexus remove-child vol "$ub" >/dev/null
c A nexus show vol
echo
echo "== data verified again"
c A nexus unpublish vol >/dev/null
got=$(sum_range A vol $data_mb)
echo "   volume: $got (want $want)"
[[ $got == "$want" ]] || { echo "DATA MISMATCH"; exit 1; }
c A nexus destroy vol >/dev/null
c C replica unshare vol0 >/dev/null
c B replica unshare vol1 >/dev/null
sa=$(sum_range A vol0 $vol_mb)
sc=$(sum_range C vol0 $vol_mb)
sb=$(sum_range B vol1 $vol_mb)
echo "   replicas: A $sa, C $sc, B(new) $sb"
[[ $sa == "$sc" && $sa == "$sb" ]] || { echo "REPLICAS DIFFER"; exit 1; }
echo "== cluster demo done: no application error, every replica identical"
