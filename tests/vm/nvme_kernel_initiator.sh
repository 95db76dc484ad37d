#!/usr/bin/env bash
# The Linux kernel NVMe/TCP initiator (nvme-cli in a QEMU guest) against Castor's
# target: discover, connect, identify, raw I/O, ext4, reconnect with digests,
# disconnect; afterwards the target must have no controller left.
#
#   tests/vm/nvme_kernel_initiator.sh PATH/TO/castor-nvmf-serve GUEST_DIR
set -uo pipefail
serve=$1
guest=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/castor-vm.XXXXXX)
pid="" cap_pid=""
cleanup() {
  [[ -n "$cap_pid" ]] && kill "$cap_pid" 2>/dev/null
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
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

nqn="nqn.2026-11.io.castor:vm-$$"
"$serve" --bdev "malloc:///vol0?size_mb=64&blk_size=512" --late-bdev "malloc:///vol1?size_mb=8&blk_size=512" \
  --nqn "$nqn" --port 0 \
  --port-file "$work/port" --log-level info >"$work/target.log" 2>&1 &
pid=$!
for _ in $(seq 50); do [[ -s "$work/port" ]] && break; sleep 0.1; done
port=$(cat "$work/port" 2>/dev/null)
[[ -n "$port" ]] || { echo "target did not start"; cat "$work/target.log"; exit 1; }
echo "target pid $pid on 127.0.0.1:$port, nqn $nqn"

# Capture the exchange for tshark's NVMe/TCP dissector.
dumpcap -q -i lo -f "tcp port $port" -s 0 -B 64 -w "$work/nvme.pcapng" >"$work/dumpcap.log" 2>&1 &
cap_pid=$!
# dumpcap writes the file's header once it captures: wait for that, not a fixed time.
for _ in $(seq 100); do [[ -s $work/nvme.pcapng ]] && break; kill -0 "$cap_pid" 2>/dev/null || break; sleep 0.05; done
[[ -s $work/nvme.pcapng ]] || { echo "FAIL: dumpcap does not capture on lo"; cat "$work/dumpcap.log"; exit 1; }

rc=0
# When the guest waits for a second namespace, add one (castor-nvmf-serve on SIGUSR1);
# when it waits for it to go, remove it (SIGUSR2).
(for _ in $(seq 1200); do
   if grep -a -q "@@ waiting for namespace 2" "$work/guest.log" 2>/dev/null; then kill -USR1 "$pid"; break; fi
   sleep 0.25
 done
 for _ in $(seq 1200); do
   if grep -a -q "@@ ready for namespace 2 removal" "$work/guest.log" 2>/dev/null; then kill -USR2 "$pid"; break; fi
   sleep 0.25
 done) &
"$here/boot.sh" "$guest" "$work/guest.log" mode=nvme port="$port" nqn="$nqn" mb=16 | tee "$work/steps" || rc=1
for want in "discover lists $nqn" "id-ctrl model ok" "raw 16 MiB written and read back" \
            "fio randwrite with crc32c verify passed" "namespace 2 appeared after an async event" \
            "namespace 2 removed after an async event" \
            "files identical after reconnect with digests" "disconnected"; do
  grep -q "$want" "$work/steps" || { echo "FAIL: missing step: $want"; rc=1; }
done
sleep 0.5
created=$(grep -c "controller .* created subnqn=$nqn" "$work/target.log")
destroyed=$(grep -c "controller .* destroyed" "$work/target.log")
echo "target: $created I/O-subsystem controller(s) created, $destroyed controller(s) destroyed (incl. discovery)"
if ((created < 2)); then echo "FAIL: expected two connections (with and without digests)"; rc=1; fi
if grep -q "malformed PDU" "$work/target.log"; then echo "FAIL: the target saw a malformed PDU"; rc=1; fi
kill "$pid" && wait "$pid"
pid=""
if [[ -n "$cap_pid" ]]; then
  sleep 0.5
  kill "$cap_pid" 2>/dev/null
  wait "$cap_pid" 2>/dev/null
  cap_pid=""
  pdus=$(tshark -r "$work/nvme.pcapng" -d "tcp.port==$port,nvme-tcp" -Y nvme-tcp 2>/dev/null | wc -l)
  bad=$(tshark -r "$work/nvme.pcapng" -d "tcp.port==$port,nvme-tcp" -Y "_ws.malformed || _ws.expert.severity >= error" 2>/dev/null | wc -l)
  echo "tshark: $pdus NVMe/TCP packets decoded, $bad malformed or in error"
  if ((pdus == 0 || bad > 0)); then
    echo "FAIL: the capture does not decode cleanly"
    tshark -r "$work/nvme.pcapng" -d "tcp.port==$port,nvme-tcp" -Y "_ws.malformed || _ws.expert.severity >= error" 2>/dev/null | head
    rc=1
  fi
fi
if ((rc)); then
  echo "---- guest console (tail)"
  tail -40 "$work/guest.log"
  echo "---- target log (tail)"
  tail -20 "$work/target.log"
fi
exit $rc
