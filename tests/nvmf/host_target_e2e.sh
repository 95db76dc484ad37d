#!/usr/bin/env bash
# Castor's host (castor-perf) against Castor's target (castor-nvmf-serve) over loopback:
# a verified mixed workload on two connections with header and data digests, then
# plain reads and large writes (R2T). Exits non-zero on any error or mismatch.
#   host_target_e2e.sh PATH/castor-nvmf-serve PATH/castor-perf
set -uo pipefail
serve=$1 perf=$2
work=$(mktemp -d /tmp/castor-nvmf-e2e.XXXXXX)
nqn="nqn.2026-11.io.castor:e2e-$$"
"$serve" --bdev "malloc:///m0?size_mb=64&blk_size=512" --nqn "$nqn" --port 0 --port-file "$work/port" \
  --reactors 2 --log-level warn >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [[ -s "$work/port" ]] && break; sleep 0.1; done
port=$(cat "$work/port")
rc=0
"$perf" -r "127.0.0.1:$port" -n "$nqn" -w randrw -t 2 -q 16 -c 2 --verify --hdgst --ddgst --cores 0,1 || rc=1
"$perf" -r "127.0.0.1:$port" -n "$nqn" -w randrw -b 65536 -t 1 -q 4 --verify || rc=1
"$perf" -r "127.0.0.1:$port" -n "$nqn" -w randread -t 1 -q 32 || rc=1
if "$perf" -r "127.0.0.1:$port" -n "nqn.2026-11.io.castor:nope" -t 1 2>"$work/err"; then rc=1; fi
grep -q "refused" "$work/err" || { echo "unknown subsystem not refused: $(cat "$work/err")"; rc=1; }
if grep -q -i "malformed" "$work/serve.log"; then echo "target saw a malformed PDU"; rc=1; fi
exit $rc
