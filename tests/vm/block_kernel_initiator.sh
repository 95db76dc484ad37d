#!/usr/bin/env bash
# The Linux kernel's own NBD client, iSCSI initiator and NVMe/TCP host, in a QEMU guest,
# against castor-engine's NBD exports, iSCSI target nodes and NVMe-oF subsystems:
#   nbd    nbd-client (netlink): size and flags as the kernel took them, raw I/O, fio
#          verify, blkdiscard (TRIM), ext4; again over two connections (multi-conn)
#   iscsi  open-iscsi (iscsid, iscsiadm, iscsi_tcp, sd): SendTargets, a wrong CHAP secret
#          refused, CHAP login, what sd read (VPD pages, caching mode page, provisioning),
#          raw I/O, fio verify, blkdiscard (UNMAP), ext4, logout; again with mutual CHAP
#          and CRC32C digests
#   nbd-nexus, iscsi-nexus, nvmf-nexus
#          a replicated volume (a nexus of two local replicas, one behind a fault bdev)
#          published over the protocol: fio writes with verify while one replica starts
#          failing every I/O (NVMe-oF: stops answering), and again while a new replica is
#          rebuilt and the failed one removed; ext4 across a reconnect. The kernel must see
#          no error, and the two replicas must then be equal block for block.
#   iscsi-restart, nvmf-restart
#          the engine (over a file) is killed with kill -9 once the guest's write is
#          acknowledged, and restarted on the same address: the kernel's session recovery
#          or controller reconnect connects again by itself, a read queued meanwhile
#          completes, and the data acknowledged before the crash reads back.
# Afterwards the engine must hold no connection or session, and tshark must decode the
# captured exchange without a malformed packet.
#
#   tests/vm/block_kernel_initiator.sh MODE PATH/TO/castor-engine PATH/TO/castorctl GUEST_DIR
set -uo pipefail
mode=$1 engine=$2 ctl=$3 guest=$4
proto=${mode%%-*}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/castor-vm.XXXXXX)
pid="" cap_pid=""
cleanup() {
  [[ -n "$cap_pid" ]] && kill "$cap_pid" 2>/dev/null
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [[ -s $work/pid2 ]] && kill "$(cat "$work/pid2")" 2>/dev/null  # an engine restarted by the driver
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "qemu-system-x86_64 is missing (scripts/setup.sh installs qemu-system-x86)"
  exit 1
fi
for tool in dumpcap tshark; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (scripts/setup.sh installs tshark)"; exit 1; }
done
"$here/make-guest.sh" "$guest" || { echo "cannot build the guest"; exit 1; }

size_mb=64
iqn="iqn.2026-11.io.castor:vm-$$" nqn=none
vol0="malloc:///vol0?size_mb=$size_mb&blk_size=512"
[[ $mode == *-restart ]] && vol0="file://$work/vol0.img?size_mb=$size_mb&blk_size=512&name=vol0"
args=(--cores 0 --grpc-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$work/state"
      --bdev "$vol0" --ready-file "$work/ready" --log-level info)
case "$mode" in
  nbd) args+=(--nbd-listen 127.0.0.1:0 --nbd-export vol0=vol0) ;;
  iscsi) args+=(--iscsi-listen 127.0.0.1:0) ;;
  nbd-nexus | iscsi-nexus | nvmf-nexus)
    args+=(--"$proto"-listen 127.0.0.1:0 --bdev "malloc:///r1?size_mb=$size_mb&blk_size=512"
           --bdev "fault:///fr1?base=r1")
    ;;
  iscsi-restart | nvmf-restart)
    # Restarted on the same address, with the target node or subsystem made at start-up.
    fixed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    if [[ $proto == iscsi ]]; then
      args+=(--iscsi-listen "127.0.0.1:$fixed" --iscsi-export "$iqn=vol0")
    else
      args+=(--nvmf-listen "127.0.0.1:$fixed" --nvmf-share vol0)
    fi
    ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
start_engine() {
  rm -f "$work/ready"
  "$engine" "${args[@]}" >>"$work/engine.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [[ -s "$work/ready" ]] && break; sleep 0.1; done
  [[ -s "$work/ready" ]] || { echo "engine did not start"; cat "$work/engine.log"; exit 1; }
}
start_engine
grpc="127.0.0.1:$(jq -r .grpc_port "$work/ready")"
mport=$(jq -r .metrics_port "$work/ready")
port=$(jq -r "if \"$proto\" == \"nvmf\" then .nvmf_ports[0] else .${proto}_port end" "$work/ready")
echo "engine pid $pid, $proto on 127.0.0.1:$port"
c() { "$ctl" -e "$grpc" "$@"; }

user="guest-$$" secret="initiator-secret-$$" tuser="castor-$$" tsecret="target-secret-$$"
case "$mode" in
  iscsi)
    c iscsi export vol0 --iqn "$iqn" --chap-user "$user" --chap-secret "$secret" \
      --mutual-user "$tuser" --mutual-secret "$tsecret" >/dev/null || { echo "FAIL: iscsi export"; exit 1; }
    ;;
  *-nexus)
    case $proto in
      nbd) pub=(--nbd-name nx) ;;
      iscsi) pub=(--iqn "$iqn") ;;
      nvmf) pub=() ;;
    esac
    c nexus create nx --size "${size_mb}MiB" --child bdev:///vol0 --child bdev:///fr1 >/dev/null &&
      puri=$(c nexus publish nx --protocol "$proto" "${pub[@]}") || { echo "FAIL: nexus"; exit 1; }
    nqn=${puri##*/}
    ;;
esac

dumpcap -q -i lo -f "tcp port $port" -s 0 -B 64 -w "$work/cap.pcapng" >"$work/dumpcap.log" 2>&1 &
cap_pid=$!
# dumpcap writes the file's header once it captures: wait for that, not a fixed time.
for _ in $(seq 100); do [[ -s $work/cap.pcapng ]] && break; kill -0 "$cap_pid" 2>/dev/null || break; sleep 0.05; done
[[ -s $work/cap.pcapng ]] || { echo "FAIL: dumpcap does not capture on lo"; cat "$work/dumpcap.log"; exit 1; }

# Waits (up to 5 minutes) for the guest to print LINE.
await_guest() {
  local i
  for i in $(seq 1200); do
    grep -a -q "$1" "$work/guest.log" 2>/dev/null && return 0
    sleep 0.25
  done
  echo "FAIL: the guest never printed '$1'"
  return 1
}

# In the nexus modes, the guest's progress lines drive the faults: fail replica r1, then
# add a new replica r2, wait for its rebuild and remove r1. Over NBD and iSCSI r1 fails
# every I/O; over NVMe-oF it stops answering (hang), and the nexus must retire it on its
# child I/O timeout (10 s) before the kernel's own command timeout (30 s) fires.
fault_mode=error fault_reason=io_error
[[ $proto == nvmf ]] && fault_mode=hang fault_reason=timed_out
nexus_driver() {
  await_guest "@@ writing: fail a replica now" || return 1
  c fault inject fr1 --mode $fault_mode --op all >/dev/null || { echo "FAIL: fault inject"; return 1; }
  await_guest "@@ writing: add a replica now" || return 1
  c -o json nexus show nx >"$work/nexus-faulted.json"
  # The hung I/Os complete late (and are ignored), so that r1 can be removed.
  [[ $fault_mode == hang ]] && c fault clear fr1 >/dev/null
  c bdev create "malloc:///r2?size_mb=$size_mb&blk_size=512" >/dev/null &&
    c nexus add-child nx bdev:///r2 >/dev/null &&
    c rebuild watch nx bdev:///r2 --interval 0.2 >"$work/rebuild.log" 2>&1 &&
    c nexus remove-child nx bdev:///fr1 >/dev/null || { echo "FAIL: heal: $(tail -2 "$work/rebuild.log")"; return 1; }
}

# In the restart modes: kill -9 the engine once the guest's data is acknowledged, and start
# it again on the same address over the same file.
restart_driver() {
  await_guest "@@ written: kill the engine now" || return 1
  kill -9 "$pid"
  wait "$pid" 2>/dev/null
  echo "engine killed (kill -9)"
  sleep 2
  start_engine
  echo "engine restarted: pid $pid"
  echo "$pid" >"$work/pid2"
}

rc=0
driver=""
if [[ $mode == *-nexus ]]; then
  nexus_driver &
  driver=$!
elif [[ $mode == *-restart ]]; then
  restart_driver &
  driver=$!
fi
case "$mode" in
  nbd)
    "$here/boot.sh" "$guest" "$work/guest.log" mode=nbd port="$port" export=vol0 mb=16 size_mb=$size_mb |
      tee "$work/steps" || rc=1
    steps=("size $((size_mb << 20)) bytes" "flush: write back cache" "trim: discard enabled"
           "raw 16 MiB written and read back" "fio randwrite with crc32c verify passed"
           "blkdiscard (NBD_CMD_TRIM) ok" "files identical over two connections" "disconnected")
    ;;
  iscsi)
    "$here/boot.sh" "$guest" "$work/guest.log" mode=iscsi port="$port" iqn="$iqn" mb=16 size_mb=$size_mb \
      user="$user" secret="$secret" tuser="$tuser" tsecret="$tsecret" | tee "$work/steps" || rc=1
    steps=("SendTargets lists $iqn" "wrong CHAP secret refused" "logged in with CHAP" "VPD 0x80 and 0x83 read"
           "size $((size_mb << 20)) bytes" "caching mode page: write back" "logical block provisioning: unmap"
           "not rotational" "raw 16 MiB written and read back" "fio randwrite with crc32c verify passed"
           "blkdiscard (UNMAP) ok" "files identical after login with mutual CHAP and digests" "logged out")
    ;;
  *-restart)
    shared_nqns() { sed -n "s/.*shared bdev 'vol0' as \([^ ]*\) .*/\1/p" "$work/engine.log" | sort -u; }
    [[ $proto == nvmf ]] && nqn=$(shared_nqns)
    "$here/boot.sh" "$guest" "$work/guest.log" mode="$mode" port="$port" iqn="$iqn" nqn="$nqn" mb=8 |
      tee "$work/steps" || rc=1
    steps=("written: kill the engine now" "connection lost" "read back after the engine restarted"
           "session recovered" "written and read back after recovery")
    if [[ $proto == iscsi ]]; then steps+=("logged in" "logged out"); else steps+=("connected" "disconnected"); fi
    if [[ $proto == nvmf ]]; then
      # The restarted engine shared the file under the same NQN (its UUID is stable).
      again=$(shared_nqns)
      echo "engine: subsystem NQN(s) over both runs: $again"
      [[ $again == "$nqn" ]] || { echo "FAIL: the NQN changed across the restart"; rc=1; }
    fi
    ;;
  *-nexus)
    "$here/boot.sh" "$guest" "$work/guest.log" mode="$mode" port="$port" export=nx iqn="$iqn" nqn="$nqn" mb=48 \
      metrics_port="$mport" | tee "$work/steps" || rc=1
    steps=("nexus online" "nexus degraded while fio was writing" "fio verify passed through the replica's failure"
           "nexus online again while fio was writing" "fio verify passed during the rebuild" "files identical after reconnecting" "done")
    ;;
esac
[[ -n $driver ]] && { wait "$driver" || rc=1; }
# The restarted engine (a child of the driver's subshell) is the one to check and stop.
if [[ -s $work/pid2 ]]; then
  pid=$(cat "$work/pid2")
  grpc="127.0.0.1:$(jq -r .grpc_port "$work/ready")"
fi
for want in "${steps[@]}"; do
  grep -q -F "$want" "$work/steps" || { echo "FAIL: missing step: $want"; rc=1; }
done

# What the engine saw: the commands the kernel sent (its flushes and discards reached the
# volume), no protocol or digest error, and every connection and session let go.
kill -0 "$pid" 2>/dev/null || { echo "FAIL: the engine died"; rc=1; }
fetch_metrics() { curl -s "http://127.0.0.1:$(jq -r .metrics_port "$work/ready")/metrics" >"$work/metrics"; }
metric() { awk -v k="$1" '$1 == k {print $2}' "$work/metrics"; }
# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds or time is up.
wait_for() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do ((SECONDS < end)) || return 1; sleep 0.1; done
}
# The guest is gone: wait (not a fixed time) until the engine has let go of its
# connections; the checks below then read the final metrics.
let_go() {
  fetch_metrics
  case $proto in
    nvmf) [[ $(awk '/^castor_nvmf_controllers\{/ {n += $2} END {print n + 0}' "$work/metrics") == 0 ]] ;;
    nbd) [[ $(awk '/^castor_nbd_connections\{/ {n += $2} END {print n + 0}' "$work/metrics") == 0 ]] ;;
    iscsi) [[ $(metric castor_iscsi_connections) == 0 ]] ;;
  esac
}
wait_for 10 let_go || echo "engine: connections still open after 10 s"
expect() {  # SERIES TEST VALUE
  local v
  v=$(metric "$1")
  echo "engine: $1 = ${v:-missing}"
  [[ -n $v ]] && awk -v v="$v" -v t="$2" -v w="$3" 'BEGIN {exit !((t == "eq" && v == w) || (t == "gt" && v > w))}' ||
    { echo "FAIL: expected $1 $2 $3"; rc=1; }
}
if [[ $mode == *-nexus ]]; then
  # r1 was retired for its errors; vol0 and the rebuilt r2 are all that is left, equal
  # block for block (read on the engine once the nexus has let go of them).
  reason=$(jq -r '.children[] | select(.uri == "bdev:///fr1") | "\(.state) \(.fault_reason)"' "$work/nexus-faulted.json")
  echo "engine: r1 was '$reason' when the new replica was added"
  [[ $reason == "faulted $fault_reason" ]] || { echo "FAIL: r1 should be faulted by $fault_reason"; rc=1; }
  kids=$(c -o json nexus show nx | jq -r '[.state] + [.children[] | "\(.uri)=\(.state)"] | join(" ")')
  echo "engine: nexus $kids"
  [[ $kids == "online bdev:///vol0=healthy bdev:///r2=healthy" ]] || { echo "FAIL: nexus not healed"; rc=1; }
  c nexus unpublish nx >/dev/null && c nexus destroy nx >/dev/null || { echo "FAIL: nexus destroy"; rc=1; }
  for b in vol0 r2; do  # in 2 MiB reads (a gRPC message is at most 4 MiB)
    : >"$work/$b.img"
    for ((off = 0; off < size_mb << 20; off += 2 << 20)); do
      c bdev read "$b" --offset $off --length $((2 << 20)) --file "$work/chunk" >/dev/null &&
        cat "$work/chunk" >>"$work/$b.img" || { echo "FAIL: read $b at $off"; rc=1; break; }
    done
    [[ $(stat -c %s "$work/$b.img") == $((size_mb << 20)) ]] || { echo "FAIL: could not read all of $b"; rc=1; }
  done
  sums=$(sha256sum "$work/vol0.img" "$work/r2.img" | cut -d' ' -f1 | sort -u | wc -l)
  echo "engine: replicas vol0 and r2 $( ((sums == 1)) && echo equal || echo DIFFER)"
  ((sums == 1)) || rc=1
  expect "castor_bdev_ops_total{bdev=\"vol0\",op=\"flush\"}" gt 0
  expect "castor_bdev_errors_total{bdev=\"vol0\",op=\"write\"}" eq 0
else
  # A discard is NBD_CMD_TRIM -> unmap, or SCSI UNMAP -> write-zeroes (the LU promises
  # LBPRZ: unmapped blocks read zero).
  discard_op=unmap
  [[ $proto == iscsi ]] && discard_op=write_zeroes
  [[ $mode == *-restart ]] && discard_op=""  # (no discard in those scenarios)
  for op in flush $discard_op; do expect "castor_bdev_ops_total{bdev=\"vol0\",op=\"$op\"}" gt 0; done
  expect "castor_bdev_errors_total{bdev=\"vol0\",op=\"write\"}" eq 0
fi
if [[ $mode == nbd ]]; then
  expect castor_nbd_connections_accepted_total eq 3  # one, then two (multi-conn)
fi
if [[ $proto == nvmf ]]; then
  ctrls=$(awk '/^castor_nvmf_controllers\{/ {n += $2} END {print n + 0}' "$work/metrics")
  echo "engine: $ctrls NVMe-oF controller(s) left"
  [[ $ctrls == 0 ]] || { echo "FAIL: controllers left after disconnect"; rc=1; }
elif [[ $proto == nbd ]]; then
  expect castor_nbd_protocol_errors_total eq 0
  expect "castor_nbd_connections{export=\"$( [[ $mode == nbd ]] && echo vol0 || echo nx)\"}" eq 0
else
  case $mode in
    iscsi)
      expect 'castor_iscsi_logins_total{result="failed"}' eq 1  # the wrong secret
      expect 'castor_iscsi_logins_total{result="ok"}' gt 1
      ;;
    iscsi-restart) expect 'castor_iscsi_logins_total{result="ok"}' eq 1 ;;  # the recovery, on the new engine
    *) expect 'castor_iscsi_logins_total{result="ok"}' gt 1 ;;
  esac
  expect castor_iscsi_protocol_errors_total eq 0
  expect castor_iscsi_digest_errors_total eq 0
  expect castor_iscsi_connections eq 0
  left=$("$ctl" -e "$grpc" -o json iscsi sessions | jq 'length')
  echo "engine: $left iSCSI session(s) left"
  [[ $left == 0 ]] || { echo "FAIL: sessions left after logout"; rc=1; }
fi

if [[ -n "$cap_pid" ]]; then
  sleep 0.5
  kill "$cap_pid" 2>/dev/null
  wait "$cap_pid" 2>/dev/null
  cap_pid=""
  decode=(-r "$work/cap.pcapng")
  dissector=$proto
  [[ $proto == nvmf ]] && dissector=nvme-tcp
  [[ $proto != nbd ]] && decode+=(-d "tcp.port==$port,$dissector")
  pdus=$(tshark "${decode[@]}" -Y "$dissector" 2>/dev/null | wc -l)
  # sd asks for the first 4 bytes of a VPD page to learn its length; the SCSI dissector
  # calls the answer (correctly cut to the allocation length) malformed.
  malformed="_ws.malformed && !(scsi.sbc.opcode == 0x12 && iscsi.datasegmentlength < 8)"
  bad=$(tshark "${decode[@]}" -Y "$malformed" 2>/dev/null | wc -l)
  echo "tshark: $pdus $proto packets decoded, $bad malformed"
  if ((pdus == 0 || bad > 0)); then
    echo "FAIL: the capture does not decode cleanly"
    tshark "${decode[@]}" -Y "$malformed" 2>/dev/null | head
    rc=1
  fi
fi
# (After a restart the engine is not this shell's child: wait for it by polling.)
kill "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
pid=""
if ((rc)); then
  echo "---- guest console (tail)"
  tail -40 "$work/guest.log"
  echo "---- engine log (tail)"
  tail -30 "$work/engine.log"
fi
exit $rc
