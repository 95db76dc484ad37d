#!/usr/bin/env bash
# Boots the test guest under QEMU (software emulation; the network is QEMU's user mode,
# where the guest reaches the host's 127.0.0.1 as 10.0.2.2) and passes key=value
# arguments to its init as castor.key=value. Prints the guest's "@@" lines; exits 0
# when the guest reports "@@RESULT PASS".
#
#   tests/vm/boot.sh GUEST_DIR LOG mode=nvme port=4420 nqn=...
#
# Optional environment: VM_EXTRA_INITRD, a cpio archive appended to the initramfs (files a
# test adds, such as a binary under test); VM_HOSTFWD, QEMU user-network forwards
# ("hostfwd=tcp:127.0.0.1:HOSTPORT-:GUESTPORT,..."), so the host reaches guest services.
set -uo pipefail
guest=$1 log=$2
shift 2
args="console=ttyS0 panic=-1 quiet loglevel=3"
for kv in "$@"; do args+=" castor.$kv"; done
initrd="$guest/initramfs.gz"
if [[ -n ${VM_EXTRA_INITRD:-} ]]; then
  initrd=$(mktemp /tmp/castor-initrd.XXXXXX)
  trap 'rm -f "$initrd"' EXIT
  cat "$guest/initramfs.gz" "$VM_EXTRA_INITRD" >"$initrd"
fi
netdev="user,id=n0,ipv6=off${VM_HOSTFWD:+,$VM_HOSTFWD}"
timeout "${VM_TIMEOUT:-300}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2 \
  -nographic -no-reboot -kernel "$guest/vmlinuz" -initrd "$initrd" -append "$args" \
  -netdev "$netdev" -device virtio-net-pci,netdev=n0,romfile= </dev/null >"$log" 2>&1
# The console may prefix the first line with terminal escape sequences.
grep -a -o '@@.*' "$log"
grep -a -q '@@RESULT PASS' "$log"
