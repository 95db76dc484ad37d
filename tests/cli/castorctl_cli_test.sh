#!/usr/bin/env bash
# castorctl's cluster verbs (node, volume, cluster, and pool with castor-control) with no
# castor-control running. Bad input must be refused before any RPC: the control endpoint
# is a closed port, so a refusal with exit 2 proves no call was made (a call would fail
# with exit 1, "cannot reach"). Every verb that gets past its checks must say it cannot
# reach castor-control, on one line, with exit 1 and nothing on stdout.
#   castorctl_cli_test.sh castorctl
set -uo pipefail
ctl=$1
closed=127.0.0.1:1  # nothing listens on port 1
unset CASTOR_ENDPOINT CASTOR_CONTROL
errfile=$(mktemp)
trap 'rm -f "$errfile"' EXIT
fail=0
n=0

# expect RC STDERR_PREFIX -- ARGS...: runs castorctl ARGS; checks the exit code, that stderr
# is one line starting with STDERR_PREFIX, and that stdout is empty.
expect() {
  local want_rc=$1 want_err=$2
  shift 3
  local out err rc
  out=$("$ctl" "$@" 2>"$errfile")
  rc=$?
  err=$(cat "$errfile")
  n=$((n + 1))
  local lines
  lines=$(printf '%s' "$err" | grep -c '')
  if [[ $rc != "$want_rc" || $err != "$want_err"* || $lines != 1 || -n $out ]]; then
    echo "FAIL: castorctl $*"
    echo "  want rc $want_rc, stderr '$want_err...' (one line), no stdout"
    echo "  got  rc $rc, stderr ($lines lines) '$err', stdout '${out:0:200}'"
    fail=1
  fi
}
usage() { expect 2 "castorctl: error: $1" -- -c "$closed" "${@:2}"; }
unreachable() { expect 1 "castorctl: error: cannot reach castor-control at $closed" -- -c "$closed" "$@"; }

# ---- rejected before any RPC (exit 2)
usage "--size: a volume's size must be positive" volume create --size 0 --replicas 3
usage "--size: '100' is not a multiple of 4096 bytes" volume create --size 100 --replicas 1
usage "--size: 'lots' is not a size" volume create --size lots --replicas 1
usage "--replicas: Value 0 not in range 1 to 8" volume create --size 1GiB --replicas 0
usage "--replicas: Value 9 not in range 1 to 8" volume create --size 1GiB --replicas 9
usage "--replicas is required" volume create --size 1GiB
usage "--size is required" volume create --replicas 3
usage "--uuid: 'not-a-uuid' is not a UUID" volume create --size 1GiB --replicas 1 --uuid not-a-uuid
usage "--name: 'a/b' is not a name" volume create --size 1GiB --replicas 1 --name a/b
usage "--protocol: " volume create --size 1GiB --replicas 1 --protocol smb
usage "--label: 'app' is not KEY=VALUE" volume create --size 1GiB --replicas 1 --label app
usage "--label: '=db' is not KEY=VALUE" volume create --size 1GiB --replicas 1 --label =db
usage "--node-label: 'zone=' has no value" volume create --size 1GiB --replicas 1 --node-label zone=
usage "--pool-label: 'tier' is not KEY=VALUE" volume create --size 1GiB --replicas 1 --pool-label tier
usage "--spread-label: 'zone=a' is not a label key" volume create --size 1GiB --replicas 1 --spread-label zone=a
usage "--allowed-node: 'n 1' is not a name" volume create --size 1GiB --replicas 1 --allowed-node 'n 1'
usage "--label: label 'app' is given twice" volume create --size 1GiB --replicas 1 --label app=a --label app=b
usage "--replicas: Value 0 not in range 1 to 8" volume scale 11111111-2222-3333-4444-555555555555 --replicas 0
usage "--size: a volume's size must be positive" volume resize 11111111-2222-3333-4444-555555555555 --size 0
usage "UUID is required" volume get
usage "--interval requires --watch" volume get v1 --interval 2
usage "LABELS: 'rack' is not KEY=VALUE" node label n1 rack
usage "LABELS: label 'rack' is given twice" node label n1 rack=a rack=
usage "LABELS is required" node label n1
usage "NAME is required" node get
usage "A subcommand is required" node
usage "--label: 'tier' is not KEY=VALUE" pool create n1 p0 --disk file:///d.img --label tier
usage "NAME is required" pool create n1 --disk file:///d.img
usage "'n/1' is not a name" pool create n/1 p0 --disk file:///d.img
usage "The following argument was not expected: p0" pool list p0
usage "pool import acts on one engine" pool import --disk file:///d.img
usage "pool export acts on one engine" pool export p0
# Without castor-control the pool verbs are the engine's: the cluster forms are usage errors.
expect 2 "castorctl: error: The following argument was not expected: p0" -- -e "$closed" pool create n1 p0 --disk a
expect 2 "castorctl: error: The following argument was not expected: --node" -- -e "$closed" pool list --node n1
expect 2 "castorctl: error: The following argument" -- -e "$closed" pool create p0 --disk a --label a=b

# ---- well-formed: one RPC, which cannot reach castor-control (exit 1)
unreachable cluster info
unreachable node list
unreachable node get n1
unreachable node cordon n1
unreachable node uncordon n1
unreachable node drain n1
unreachable node label n1 rack=r1 zone=
unreachable volume create --size 64GiB --replicas 3 --uuid 11111111-2222-3333-4444-555555555555 \
  --name db --thin --protocol iscsi --allowed-node n1 --allowed-node n2 --preferred-node n1 \
  --node-label zone=a --spread-label zone --pool-label tier=fast --label app=db
unreachable volume list --max-entries 10 --token abc
unreachable volume get db
unreachable volume get db --watch --interval 0.1
unreachable volume publish 11111111-2222-3333-4444-555555555555 --node n1 --allow-host nqn.2014-08.org.nvmexpress:uuid:1 --frontend-node app1
unreachable volume unpublish 11111111-2222-3333-4444-555555555555
unreachable volume resize 11111111-2222-3333-4444-555555555555 --size 128GiB
unreachable volume scale 11111111-2222-3333-4444-555555555555 --replicas 2
unreachable volume destroy 11111111-2222-3333-4444-555555555555
unreachable pool create n1 p0 --disk 'file:///var/lib/castor/d0.img?size_mb=1024' --label tier=fast --cluster-size 1MiB
unreachable pool list
unreachable pool list --node n1
unreachable pool destroy n1 p0
unreachable -o json volume list

# ---- which endpoint: CASTOR_CONTROL counts as given; --control wins over it; the default
# is 127.0.0.1:10125; without castor-control named, pool talks to the engine.
CASTOR_CONTROL=$closed expect 1 "castorctl: error: cannot reach castor-control at $closed" -- pool list
CASTOR_CONTROL=127.0.0.1:2 expect 1 "castorctl: error: cannot reach castor-control at $closed" -- --control="$closed" cluster info
expect 1 "castorctl: error: cannot reach engine at $closed" -- -e "$closed" pool list
expect 1 "castorctl: error: cannot reach engine at $closed" -- -e "$closed" pool create p0 --disk a
if ! "$ctl" --help | grep -q '127.0.0.1:10125'; then
  echo "FAIL: --help does not name the default castor-control address"
  fail=1
fi
for group in node volume cluster; do
  if ! "$ctl" "$group" --help >/dev/null; then
    echo "FAIL: castorctl $group --help"
    fail=1
  fi
done

if ((fail)); then
  echo "castorctl cli test: FAILED"
  exit 1
fi
echo "castorctl cli test: all $n cases passed"
