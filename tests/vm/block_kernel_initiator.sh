#!/usr/bin/env bash
# The Linux kernel's own NBD client and iSCSI initiator, in a QEMU guest, against
# castor-engine's NBD export or iSCSI target node:
#   nbd    nbd-client (netlink): size and flags as the kernel took them, raw I/O, fio
#          verify, blkdiscard (TRIM), ext4; again over two connections (multi-conn)
#   iscsi  open-iscsi (iscsid, iscsiadm, iscsi_tcp, sd): SendTargets, a wrong CHAP secret
#          refused, CHAP login, what sd read (VPD pages, caching mode page, provisioning),
#          raw I/O, fio verify, blkdiscard (UNMAP), ext4, logout; again with mutual CHAP
#          and CRC32C digests
# Afterwards the engine must hold no connection or session, and tshark must decode the
# captured exchange without a malformed packet.
#
#   tests/vm/block_kernel_initiator.sh nbd|iscsi PATH/TO/castor-engine PATH/TO/castorctl GUEST_DIR
set -uo pipefail
proto=$1 engine=$2 ctl=$3 guest=$4
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/castor-vm.XXXXXX)
pid="" cap_pid=""
cleanup() {
  [[ -n "$cap_pid" ]] && kill "$cap_pid" 2>/dev/null
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "qemu-system-x86_64 is missing (scripts/setup.sh installs qemu-system-x86)"
  exit 1
fi
"$here/make-guest.sh" "$guest" || { echo "cannot build the guest"; exit 1; }

size_mb=64
args=(--cores 0 --grpc-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$work/state"
      --bdev "malloc:///vol0?size_mb=$size_mb&blk_size=512" --ready-file "$work/ready" --log-level info)
case "$proto" in
  nbd) args+=(--nbd-listen 127.0.0.1:0 --nbd-export vol0=vol0) ;;
  iscsi) args+=(--iscsi-listen 127.0.0.1:0) ;;
  *) echo "unknown protocol $proto"; exit 2 ;;
esac
"$engine" "${args[@]}" >"$work/engine.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [[ -s "$work/ready" ]] && break; sleep 0.1; done
[[ -s "$work/ready" ]] || { echo "engine did not start"; cat "$work/engine.log"; exit 1; }
grpc="127.0.0.1:$(jq -r .grpc_port "$work/ready")"
port=$(jq -r ".${proto}_port" "$work/ready")
echo "engine pid $pid, $proto on 127.0.0.1:$port"

iqn="iqn.2026-11.io.castor:vm-$$"
user="guest-$$" secret="initiator-secret-$$" tuser="castor-$$" tsecret="target-secret-$$"
if [[ $proto == iscsi ]]; then
  "$ctl" -e "$grpc" iscsi export vol0 --iqn "$iqn" --chap-user "$user" --chap-secret "$secret" \
    --mutual-user "$tuser" --mutual-secret "$tsecret" >/dev/null || { echo "FAIL: iscsi export"; exit 1; }
fi

if command -v dumpcap >/dev/null && command -v tshark >/dev/null; then
  dumpcap -q -i lo -f "tcp port $port" -s 0 -B 64 -w "$work/cap.pcapng" >"$work/dumpcap.log" 2>&1 &
  cap_pid=$!
  sleep 1
fi

rc=0
case "$proto" in
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
esac
for want in "${steps[@]}"; do
  grep -q -F "$want" "$work/steps" || { echo "FAIL: missing step: $want"; rc=1; }
done

# What the engine saw: the commands the kernel sent (its flushes and discards reached the
# volume), no protocol or digest error, and every connection and session let go.
sleep 0.5
kill -0 "$pid" 2>/dev/null || { echo "FAIL: the engine died"; rc=1; }
curl -s "http://127.0.0.1:$(jq -r .metrics_port "$work/ready")/metrics" >"$work/metrics"
metric() { awk -v k="$1" '$1 == k {print $2}' "$work/metrics"; }
expect() {  # SERIES TEST VALUE
  local v
  v=$(metric "$1")
  echo "engine: $1 = ${v:-missing}"
  [[ -n $v ]] && awk -v v="$v" -v t="$2" -v w="$3" 'BEGIN {exit !((t == "eq" && v == w) || (t == "gt" && v > w))}' ||
    { echo "FAIL: expected $1 $2 $3"; rc=1; }
}
# A discard is NBD_CMD_TRIM -> unmap, or SCSI UNMAP -> write-zeroes (the LU promises
# LBPRZ: unmapped blocks read zero).
discard_op=unmap
[[ $proto == iscsi ]] && discard_op=write_zeroes
for op in flush $discard_op; do expect "castor_bdev_ops_total{bdev=\"vol0\",op=\"$op\"}" gt 0; done
expect "castor_bdev_errors_total{bdev=\"vol0\",op=\"write\"}" eq 0
if [[ $proto == nbd ]]; then
  expect castor_nbd_connections_accepted_total eq 3  # one, then two (multi-conn)
  expect castor_nbd_protocol_errors_total eq 0
  expect 'castor_nbd_connections{export="vol0"}' eq 0
else
  expect 'castor_iscsi_logins_total{result="failed"}' eq 1  # the wrong secret
  expect 'castor_iscsi_logins_total{result="ok"}' gt 1
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
  [[ $proto == iscsi ]] && decode+=(-d "tcp.port==$port,iscsi")
  pdus=$(tshark "${decode[@]}" -Y "$proto" 2>/dev/null | wc -l)
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
kill "$pid" && wait "$pid"
pid=""
if ((rc)); then
  echo "---- guest console (tail)"
  tail -40 "$work/guest.log"
  echo "---- engine log (tail)"
  tail -30 "$work/engine.log"
fi
exit $rc
