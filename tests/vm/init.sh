#!/bin/sh
# PID 1 of the test guest (busybox). The kernel command line selects the scenario:
#   castor.mode=nvme      castor.port=PORT castor.nqn=NQN castor.mb=MiB
# It prints "@@ <step>" progress lines, "@@FAIL <why>" on failures and ends with one
# "@@RESULT PASS" or "@@RESULT FAIL" line, then powers the guest off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t tmpfs tmpfs /tmp
echo /sbin/modprobe >/proc/sys/kernel/modprobe
echo 4 >/proc/sys/kernel/printk

MODE=none PORT=4420 NQN=none MB=16 SERVER=10.0.2.2
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    castor.mode=*) MODE=${arg#*=} ;;
    castor.port=*) PORT=${arg#*=} ;;
    castor.nqn=*) NQN=${arg#*=} ;;
    castor.mb=*) MB=${arg#*=} ;;
  esac
done

failed=0
step() { echo "@@ $*"; }
bad() { echo "@@FAIL $*"; failed=1; }
end() {
  if [ "$failed" = 0 ]; then echo "@@RESULT PASS"; else echo "@@RESULT FAIL"; fi
  sync
  poweroff -f
  sleep 10
}

network() {
  modprobe virtio_pci 2>/dev/null
  modprobe virtio_net 2>/dev/null
  ip link set lo up
  n=0
  while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 || bad "no network"
}

# Waits for namespace 1's block device of the (only) connected controller.
namespace_dev() {
  n=0
  while [ $n -lt 100 ]; do
    for d in /sys/block/nvme*n1; do
      b=${d##*/}
      case "$b" in *c*n*|*'*'*) continue ;; esac
      [ -b "/dev/$b" ] && { echo "/dev/$b"; return 0; }
    done
    usleep 100000
    n=$((n + 1))
  done
  return 1
}

connect() {  # extra nvme-connect flags
  nvme connect -t tcp -a "$SERVER" -s "$PORT" -n "$NQN" "$@" >/tmp/connect.log 2>&1 || {
    bad "nvme connect $*: $(tail -1 /tmp/connect.log)"
    dmesg | tail -5
    return 1
  }
  DEV=$(namespace_dev) || { bad "no namespace device after connect $*"; return 1; }
  CTRL=/dev/$(basename "$DEV" | sed 's/n[0-9]*$//')
  step "connected $* -> $DEV"
}

disconnect() {
  nvme disconnect -n "$NQN" >/tmp/disc.log 2>&1 || bad "nvme disconnect: $(cat /tmp/disc.log)"
  n=0
  while ls /sys/block/ 2>/dev/null | grep -q nvme && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done
}

nvme_scenario() {
  network
  modprobe nvme-tcp || { bad "modprobe nvme-tcp"; return; }
  uuid=$(cat /proc/sys/kernel/random/uuid)
  echo "nqn.2014-08.org.nvmexpress:uuid:$uuid" >/etc/nvme/hostnqn
  echo "$uuid" >/etc/nvme/hostid

  nvme discover -t tcp -a "$SERVER" -s "$PORT" >/tmp/discover.log 2>&1 || bad "nvme discover: $(tail -1 /tmp/discover.log)"
  grep -q "subnqn: *$NQN" /tmp/discover.log && step "discover lists $NQN" || bad "discover does not list $NQN"
  grep -q "nqn.2014-08.org.nvmexpress.discovery" /tmp/discover.log || bad "discover does not list itself"

  # First connection: no digests. Identify, raw I/O, a file system.
  connect || return
  nvme id-ctrl "$CTRL" >/tmp/idctrl.log 2>&1 || bad "nvme id-ctrl"
  grep -q "^mn *: Castor NVMe-oF" /tmp/idctrl.log && step "id-ctrl model ok" || bad "id-ctrl model: $(grep '^mn' /tmp/idctrl.log)"
  grep -q "^subnqn *: $NQN" /tmp/idctrl.log && step "id-ctrl subnqn ok" || bad "id-ctrl subnqn"
  grep -q "^sqes *: 0x66" /tmp/idctrl.log || bad "id-ctrl sqes"
  nvme id-ns "$DEV" >/tmp/idns.log 2>&1 || bad "nvme id-ns"
  sectors=$(cat /sys/class/block/$(basename "$DEV")/size)
  nsze=$(sed -n 's/^nsze *: *//p' /tmp/idns.log)
  step "id-ns nsze=$nsze, kernel sees $sectors sectors"
  [ -n "$nsze" ] && [ $((nsze)) -gt 0 ] || bad "id-ns nsze"

  dd if=/dev/urandom of=/tmp/pattern bs=1M count="$MB" 2>/dev/null
  dd if=/tmp/pattern of="$DEV" bs=1M oflag=direct conv=fsync 2>/dev/null || bad "raw write"
  dd if="$DEV" of=/tmp/back bs=1M count="$MB" iflag=direct 2>/dev/null || bad "raw read"
  cmp -s /tmp/pattern /tmp/back && step "raw ${MB} MiB written and read back" || bad "raw read-back differs"
  # fio: random 4 KiB writes at queue depth 16 through libaio, every block verified.
  if fio --name=verify --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite \
       --bs=4k --size="${MB}M" --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 \
       --output=/tmp/fio.log >/dev/null 2>&1 && grep -q "err= 0" /tmp/fio.log; then
    step "fio randwrite with crc32c verify passed"
  else
    bad "fio verify: $(grep -m1 -i -E 'error|verify|err=' /tmp/fio.log)"
  fi
  # The host side adds a second namespace when it sees this line: the kernel hears of it
  # through an Async Event Request and scans it in.
  step "waiting for namespace 2"
  i=0
  while [ ! -b "${CTRL}n2" ] && [ $i -lt 300 ]; do usleep 100000; i=$((i + 1)); done
  if [ -b "${CTRL}n2" ]; then
    step "namespace 2 appeared after an async event ($(cat /sys/block/$(basename "${CTRL}")n2/size) sectors)"
  else
    bad "namespace 2 did not appear"
  fi
  # ... and removes it again when it sees this one.
  step "ready for namespace 2 removal"
  i=0
  while [ -b "${CTRL}n2" ] && [ $i -lt 300 ]; do usleep 100000; i=$((i + 1)); done
  if [ -b "${CTRL}n2" ]; then
    bad "namespace 2 was not removed"
  else
    step "namespace 2 removed after an async event"
  fi
  mkfs.ext4 -q -F "$DEV" >/tmp/mkfs.log 2>&1 || { bad "mkfs.ext4: $(tail -1 /tmp/mkfs.log)"; return; }
  mkdir -p /mnt/v
  mount -t ext4 "$DEV" /mnt/v || { bad "mount"; return; }
  cp /tmp/pattern /mnt/v/pattern
  i=0
  while [ $i -lt 20 ]; do echo "file $i from $(uname -r)" >/mnt/v/f$i; i=$((i + 1)); done
  sum1=$(cat /mnt/v/pattern /mnt/v/f* | sha256sum | cut -d' ' -f1)
  umount /mnt/v || bad "umount"
  disconnect
  step "files written, unmounted, disconnected"

  # Reconnect with header and data digests: the files read back identical.
  connect --hdr-digest --data-digest || return
  mount -t ext4 -o ro "$DEV" /mnt/v || { bad "mount after reconnect"; return; }
  echo 3 >/proc/sys/vm/drop_caches
  sum2=$(cat /mnt/v/pattern /mnt/v/f* | sha256sum | cut -d' ' -f1)
  [ "$sum1" = "$sum2" ] && step "files identical after reconnect with digests" || bad "files differ after reconnect"
  umount /mnt/v
  dd if="$DEV" of=/dev/null bs=1M count="$MB" iflag=direct 2>/dev/null || bad "read with digests"
  disconnect
  step "disconnected"
}

case "$MODE" in
  nvme) nvme_scenario ;;
  *) bad "unknown castor.mode=$MODE" ;;
esac
end
