#!/usr/bin/env bash
# Boots the test guest under QEMU (software emulation; the network is QEMU's user mode,
# where the guest reaches the host's 127.0.0.1 as 10.0.2.2) and passes key=value
# arguments to its init as castor.key=value. Prints the guest's "@@" lines; exits 0
# when the guest reports "@@RESULT PASS".
#
#   tests/vm/boot.sh GUEST_DIR LOG mode=nvme port=4420 nqn=...
set -uo pipefail
guest=$1 log=$2
shift 2
args="console=ttyS0 panic=-1 quiet loglevel=3"
for kv in "$@"; do args+=" castor.$kv"; done
timeout "${VM_TIMEOUT:-300}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2 \
  -nographic -no-reboot -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.gz" -append "$args" \
  -netdev user,id=n0,ipv6=off -device virtio-net-pci,netdev=n0,romfile= </dev/null >"$log" 2>&1
# The console may prefix the first line with terminal escape sequences.
grep -a -o '@@.*' "$log"
grep -a -q '@@RESULT PASS' "$log"
