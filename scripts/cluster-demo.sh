#!/usr/bin/env bash
# The cluster demo (Castor's main job): castor-control on its embedded SQLite store and
# four castor-engines on this host, each with a pool on a file. Everything below is asked
# of the control plane with castorctl; nobody touches a nexus or a replica by hand.
#   1. the engines register; a pool is declared on each node;
#   2. a 3-replica volume is created (placed on three nodes) and published over NVMe/TCP;
#   3. castor-perf (Castor's own NVMe/TCP host) writes and verifies it;
#   4. under a verifying writer, the engine of one replica is killed with SIGKILL: the
#      writer sees no error, and the control plane heals the volume by itself: it faults
#      the lost replica, places a new one on the spare node, the nexus rebuilds it (shown
#      with castorctl's progress bar) and the lost one is dropped;
#   5. the data is verified again; the killed engine comes back and its orphaned replica
#      is garbage-collected; everything stops cleanly (SIGTERM).
#
#   cluster-demo.sh [BUILD_DIR]      (default build/release)
# Environment: CASTOR_DEMO_DIR (where the pool files go, default /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/release}
CONTROL=$B/src/control/castor-control
ENGINE=$B/src/engine/castor-engine
CTL=$B/src/cli/castorctl
PERF=$B/src/tools/nvmfperf/castor-perf
work=$(mktemp -d "${CASTOR_DEMO_DIR:-/var/tmp}/castor-cluster.XXXXXX")
declare -A pid
control_pid=""

cleanup() {
  local rc=$?
  for n in "${!pid[@]}"; do kill -TERM "${pid[$n]}" 2>/dev/null || true; done
  for n in "${!pid[@]}"; do wait "${pid[$n]}" 2>/dev/null || true; done
  if [[ -n "$control_pid" ]]; then
    kill -TERM "$control_pid" 2>/dev/null || true
    wait "$control_pid" 2>/dev/null || true
  fi
  if ((rc != 0)); then
    for f in "$work"/*.log; do echo "--- $f (tail)"; tail -20 "$f"; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { echo; echo "== $*"; }
die() { echo "castor cluster demo: $*" >&2; exit 1; }
wait_file() {  # FILE PID WHAT
  for _ in $(seq 150); do
    [[ -s "$1" ]] && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  die "$3 did not start"
}

"$CONTROL" --store "sqlite://$work/control.db" --grpc-listen 127.0.0.1:0 --rest-listen 127.0.0.1:0 \
  --ready-file "$work/control.ready" --heartbeat-ms 500 --node-deadline-ms 3000 \
  --reconcile-period-ms 500 --faulted-child-wait-ms 3000 --gc-grace-ms 2000 >"$work/control.log" 2>&1 &
control_pid=$!
wait_file "$work/control.ready" "$control_pid" castor-control
cport=$(jq -r .grpc_port "$work/control.ready")
rport=$(jq -r .rest_port "$work/control.ready")
ctl() { "$CTL" --control "127.0.0.1:$cport" "$@"; }
say "castor-control (pid $control_pid): gRPC 127.0.0.1:$cport, REST http://127.0.0.1:$rport/v1, store sqlite://$work/control.db"

start_engine() {  # NAME
  local n=$1
  rm -f "$work/$n.ready"
  "$ENGINE" --cores 0 --grpc-listen 127.0.0.1:0 --metrics-listen none --nvmf-listen 127.0.0.1:0 \
    --state-dir "$work/state-$n" --ready-file "$work/$n.ready" --log-level warn \
    --control "127.0.0.1:$cport" --node-name "$n" --node-label "zone=zone-${n#node-}" \
    >>"$work/$n.log" 2>&1 &
  pid[$n]=$!
  wait_file "$work/$n.ready" "${pid[$n]}" "castor-engine $n"
}
nodes=(node-a node-b node-c node-d)
for n in "${nodes[@]}"; do start_engine "$n"; done
online() { ctl -o json node list | jq '[.nodes[] | select(.status == "online")] | length'; }
for _ in $(seq 100); do [[ $(online) == "${#nodes[@]}" ]] && break; sleep 0.2; done
[[ $(online) == "${#nodes[@]}" ]] || die "the engines did not register"
say "four engines registered (castorctl node list)"
ctl node list

say "a pool on each node (castorctl pool create NODE pool0 --disk file://...)"
for n in "${nodes[@]}"; do
  ctl pool create "$n" pool0 --disk "file://$work/$n-pool0.img?size_mb=2048" >/dev/null
done
ctl pool list

say "a 1 GiB volume with 3 replicas, published over NVMe/TCP (castorctl volume create / publish)"
uuid=$(ctl -o json volume create --size 1GiB --replicas 3 | jq -r .uuid)
uri=$(ctl -o json volume publish "$uuid" | jq -r .target.uri)
target=$(ctl -o json volume get "$uuid" | jq -r .target.node)
ctl volume get "$uuid"
hostport=${uri#nvmf://}; hostport=${hostport%%/*}
nqn=${uri##*/}

say "castor-perf writes and verifies the volume for 3 s"
"$PERF" -r "$hostport" -n "$nqn" -w randrw -b 8192 -q 16 -t 3 --verify --cores 0

# A replica away from the nexus: its engine dies under the writer.
victim=$(ctl -o json volume get "$uuid" | jq -r --arg t "$target" '[.replicas[] | select(.node != $t)][0].node')
say "a verifying writer runs; the engine of $victim (a replica; the nexus is on $target) is killed with SIGKILL"
"$PERF" -r "$hostport" -n "$nqn" -w randwrite -b 4096 -q 16 -t 20 --verify --cores 0 >"$work/perf.out" 2>&1 &
perf_pid=$!
sleep 3
kill -KILL "${pid[$victim]}"
wait "${pid[$victim]}" 2>/dev/null || true
unset "pid[$victim]"

say "the control plane heals the volume by itself (castorctl volume get, every second)"
healed=0
for i in $(seq 120); do
  json=$(ctl -o json volume get "$uuid")
  echo "--- t=${i}s"
  ctl volume get "$uuid" | sed 's/^/   /'
  if [[ $(jq -r .status <<<"$json") == online ]] &&
     [[ $(jq --arg v "$victim" '[.replicas[] | select(.state == "online" and .node != $v)] | length' <<<"$json") == 3 ]] &&
     [[ $(jq '.replicas | length' <<<"$json") == 3 ]]; then
    healed=1
    break
  fi
  sleep 1
done
((healed)) || die "the volume did not heal"
wait "$perf_pid" || { cat "$work/perf.out"; die "the writer saw an error while the volume healed"; }
tail -4 "$work/perf.out"
say "healed: replicas now on $(jq -r '[.replicas[].node] | join(", ")' <<<"$json") ($victim's was replaced); the writer saw no error"

say "the data is verified again (3 s, every block read back)"
"$PERF" -r "$hostport" -n "$nqn" -w randrw -b 8192 -q 16 -t 3 --verify --cores 0

say "$victim comes back; its replica is in no spec any more and is garbage-collected"
start_engine "$victim"
for _ in $(seq 60); do
  left=$("$CTL" -e "127.0.0.1:$(jq -r .grpc_port "$work/$victim.ready")" -o json replica list | jq 'if type == "array" then length else (.replicas | length) end')
  pools=$("$CTL" -e "127.0.0.1:$(jq -r .grpc_port "$work/$victim.ready")" -o json pool list | jq 'if type == "array" then length else (.pools | length) end')
  [[ $pools == 1 && $left == 0 ]] && break
  sleep 0.5
done
[[ $left == 0 ]] || die "$victim still holds $left replica(s)"
ctl node list

say "unpublish and destroy the volume; stop the engines and castor-control (SIGTERM)"
ctl volume unpublish "$uuid" >/dev/null
ctl volume destroy "$uuid"
ctl volume list
