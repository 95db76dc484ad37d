#!/bin/sh
# PID 1 of the test guest (busybox). The kernel command line selects the scenario:
#   castor.mode=nvme      castor.port=PORT castor.nqn=NQN castor.mb=MiB
#   castor.mode=nbd       castor.port=PORT castor.export=NAME castor.mb=MiB castor.size_mb=MiB
#   castor.mode=iscsi     castor.port=PORT castor.iqn=IQN castor.mb=MiB castor.size_mb=MiB
#                         castor.user=NAME castor.secret=S castor.tuser=NAME castor.tsecret=S
#   castor.mode=nbd-nexus|iscsi-nexus|nvmf-nexus
#                         castor.port=PORT castor.export=NAME|castor.iqn=IQN|castor.nqn=NQN
#                         castor.mb=MiB castor.metrics_port=PORT
#   castor.mode=iscsi-restart|nvmf-restart castor.port=PORT castor.iqn=IQN|castor.nqn=NQN castor.mb=MiB
#   castor.mode=csi-node  castor.node=NAME castor.serve_s=SECONDS [castor.control=HOST:PORT]
#                         runs castor-csi --mode node (added to the initramfs by the test) on
#                         tcp port 10199 and a shell on tcp port 2323 (busybox nc), for a
#                         driver on the host (through QEMU's forwards) to play kubelet
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

MODE=none PORT=4420 NQN=none MB=16 SIZE_MB=0 SERVER=10.0.2.2 EXPORT= IQN= USER= SECRET= TUSER= TSECRET=
METRICS_PORT=0 NODE=guest SERVE_S=600 CONTROL=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    castor.mode=*) MODE=${arg#*=} ;;
    castor.port=*) PORT=${arg#*=} ;;
    castor.nqn=*) NQN=${arg#*=} ;;
    castor.mb=*) MB=${arg#*=} ;;
    castor.size_mb=*) SIZE_MB=${arg#*=} ;;
    castor.export=*) EXPORT=${arg#*=} ;;
    castor.iqn=*) IQN=${arg#*=} ;;
    castor.user=*) USER=${arg#*=} ;;
    castor.secret=*) SECRET=${arg#*=} ;;
    castor.tuser=*) TUSER=${arg#*=} ;;
    castor.tsecret=*) TSECRET=${arg#*=} ;;
    castor.metrics_port=*) METRICS_PORT=${arg#*=} ;;
    castor.node=*) NODE=${arg#*=} ;;
    castor.serve_s=*) SERVE_S=${arg#*=} ;;
    castor.control=*) CONTROL=${arg#*=} ;;
  esac
done

failed=0
step() { echo "@@ $*"; }
bad() { echo "@@FAIL $*"; failed=1; }
end() {
  # Whatever the scenario, no I/O may have failed in the kernel (a discard included, which
  # mkfs would not report).
  if dmesg | grep -i -E "i/o error|critical" >/tmp/ioerr.log; then bad "kernel I/O errors: $(head -2 /tmp/ioerr.log)"; fi
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

# Raw I/O on a block device: MB MiB of random data written and read back with O_DIRECT,
# then fio random 4 KiB writes at queue depth 16 through libaio, every block verified.
raw_io() {
  dev=$1
  dd if=/dev/urandom of=/tmp/pattern bs=1M count="$MB" 2>/dev/null
  dd if=/tmp/pattern of="$dev" bs=1M oflag=direct conv=fsync 2>/dev/null || bad "raw write"
  dd if="$dev" of=/tmp/back bs=1M count="$MB" iflag=direct 2>/dev/null || bad "raw read"
  cmp -s /tmp/pattern /tmp/back && step "raw ${MB} MiB written and read back" || bad "raw read-back differs"
  if fio --name=verify --filename="$dev" --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite \
       --bs=4k --size="${MB}M" --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 \
       --output=/tmp/fio.log >/dev/null 2>&1 && grep -q "err= 0" /tmp/fio.log; then
    step "fio randwrite with crc32c verify passed"
  else
    bad "fio verify: $(grep -m1 -i -E 'error|verify|err=' /tmp/fio.log)"
  fi
}

# An ext4 file system on a block device holding the pattern and 20 small files; FS_SUM is
# their checksum. Unmounted (and so flushed) on return.
fs_write() {
  dev=$1
  mkfs.ext4 -q -F "$dev" >/tmp/mkfs.log 2>&1 || { bad "mkfs.ext4: $(tail -1 /tmp/mkfs.log)"; return 1; }
  mkdir -p /mnt/v
  mount -t ext4 "$dev" /mnt/v || { bad "mount"; return 1; }
  cp /tmp/pattern /mnt/v/pattern
  i=0
  while [ $i -lt 20 ]; do echo "file $i from $(uname -r)" >/mnt/v/f$i; i=$((i + 1)); done
  FS_SUM=$(cat /mnt/v/pattern /mnt/v/f* | sha256sum | cut -d' ' -f1)
  umount /mnt/v || bad "umount"
}

# Mounts the file system read-only with a cold page cache: the files must match FS_SUM.
fs_verify() {  # DEV WHAT
  mkdir -p /mnt/v
  echo 3 >/proc/sys/vm/drop_caches
  mount -t ext4 -o ro "$1" /mnt/v || { bad "mount $2"; return 1; }
  sum=$(cat /mnt/v/pattern /mnt/v/f* | sha256sum | cut -d' ' -f1)
  [ "$sum" = "$FS_SUM" ] && step "files identical $2" || bad "files differ $2"
  umount /mnt/v
}

# Checks a block device's size in bytes against SIZE_MB.
check_size() {
  bytes=$(blockdev --getsize64 "$1")
  [ "$bytes" = "$((SIZE_MB * 1048576))" ] && step "size $bytes bytes" || bad "size $bytes, expected $((SIZE_MB * 1048576))"
}

# The network, nvme-tcp and a host NQN of the guest's own.
nvme_start() {
  network
  modprobe nvme-tcp || { bad "modprobe nvme-tcp"; return 1; }
  uuid=$(cat /proc/sys/kernel/random/uuid)
  echo "nqn.2014-08.org.nvmexpress:uuid:$uuid" >/etc/nvme/hostnqn
  echo "$uuid" >/etc/nvme/hostid
}

nvme_scenario() {
  nvme_start || return

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

  raw_io "$DEV"
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
  fs_write "$DEV" || return
  disconnect
  step "files written, unmounted, disconnected"

  # Reconnect with header and data digests: the files read back identical.
  connect --hdr-digest --data-digest || return
  fs_verify "$DEV" "after reconnect with digests"
  dd if="$DEV" of=/dev/null bs=1M count="$MB" iflag=direct 2>/dev/null || bad "read with digests"
  disconnect
  step "disconnected"
}

# The Linux kernel's NBD client (nbd-client configures /dev/nbd0 through netlink).
nbd_connect() {  # extra nbd-client flags
  nbd-client "$SERVER" "$PORT" /dev/nbd0 -N "$EXPORT" "$@" >/tmp/nbd.log 2>&1 || {
    bad "nbd-client $*: $(tail -1 /tmp/nbd.log)"
    return 1
  }
  n=0
  while [ "$(cat /sys/block/nbd0/size 2>/dev/null)" = 0 ] && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done
  step "nbd-client connected $*: $(grep -i -m1 'size' /tmp/nbd.log)"
}

nbd_disconnect() {
  nbd-client -d /dev/nbd0 >/tmp/nbd-d.log 2>&1 || bad "nbd-client -d: $(tail -1 /tmp/nbd-d.log)"
  n=0
  while [ "$(cat /sys/block/nbd0/size 2>/dev/null)" != 0 ] && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done
}

nbd_scenario() {
  network
  modprobe nbd nbds_max=2 || { bad "modprobe nbd"; return; }
  nbd_connect -b 4096 || return
  check_size /dev/nbd0
  q=/sys/block/nbd0/queue
  # The export's transmission flags as the kernel took them: FLUSH -> a write-back cache,
  # TRIM -> discard, READ_ONLY -> not read-only.
  [ "$(cat $q/write_cache)" = "write back" ] && step "flush: write back cache" || bad "write_cache: $(cat $q/write_cache)"
  [ "$(cat $q/discard_max_bytes)" -gt 0 ] && step "trim: discard enabled" || bad "no discard"
  [ "$(cat /sys/block/nbd0/ro)" = 0 ] || bad "the device is read-only"
  raw_io /dev/nbd0
  blkdiscard -o 0 -l 1048576 /dev/nbd0 && step "blkdiscard (NBD_CMD_TRIM) ok" || bad "blkdiscard"
  fs_write /dev/nbd0 || return
  nbd_disconnect
  step "files written, unmounted, disconnected"

  # Again over two connections (the export advertises multi-conn).
  nbd_connect -b 4096 -C 2 || return
  fs_verify /dev/nbd0 "over two connections"
  dd if=/dev/nbd0 of=/dev/null bs=1M count="$MB" iflag=direct 2>/dev/null || bad "read over two connections"
  nbd_disconnect
  step "disconnected"
}

# The Linux kernel's iSCSI initiator (open-iscsi: iscsid, iscsiadm, iscsi_tcp, sd).
iscsi_node() {  # iscsiadm node arguments
  iscsiadm -m node -T "$IQN" -p "$SERVER:$PORT" "$@"
}
iscsi_set() {  # NAME VALUE
  iscsi_node -o update -n "$1" -v "$2" >/dev/null 2>&1 || bad "iscsiadm update $1"
}
iscsi_disk() {  # the sd device of the (only) session, once it opens
  n=0
  while [ $n -lt 150 ]; do
    for d in /sys/block/sd*; do
      # The node can exist before sd has finished adding the disk; opening it then fails
      # with ENXIO (seen once in CI): wait until it opens.
      [ -b "/dev/${d##*/}" ] && blockdev --getsize64 "/dev/${d##*/}" >/dev/null 2>&1 &&
        { echo "/dev/${d##*/}"; return 0; }
    done
    usleep 100000
    n=$((n + 1))
  done
  return 1
}
iscsi_login() {  # WHAT
  iscsi_node --login >/tmp/login.log 2>&1 || { bad "login $1: $(tail -1 /tmp/login.log)"; return 1; }
  DEV=$(iscsi_disk) || { bad "no disk after login $1"; return 1; }
  step "logged in $1 -> $DEV"
}
iscsi_logout() {
  iscsi_node --logout >/tmp/logout.log 2>&1 || bad "logout: $(tail -1 /tmp/logout.log)"
  n=0
  while ls /sys/block | grep -q '^sd' && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done
}

# The network, the modules and iscsid, with a node record for IQN at SERVER:PORT.
iscsi_start() {
  network
  modprobe iscsi_tcp && modprobe sd_mod || { bad "modprobe iscsi_tcp sd_mod"; return 1; }
  mkdir -p /run/lock/iscsi /var/lib/iscsi
  echo "InitiatorName=iqn.2026-11.io.castor:guest" >/etc/iscsi/initiatorname.iscsi
  iscsid -f >/tmp/iscsid.log 2>&1 &
  # Ready when its management socket (abstract, so only in /proc/net/unix) is bound.
  n=0
  until grep -q ISCSIADM_ABSTRACT_NAMESPACE /proc/net/unix || [ $n -ge 50 ]; do usleep 100000; n=$((n + 1)); done
  # A SendTargets answer carries the portal the host sees (127.0.0.1): the guest reaches it
  # at SERVER, so the node record is made by hand.
  iscsi_node -o new >/dev/null 2>&1 || { bad "iscsiadm -o new"; return 1; }
}

iscsi_scenario() {
  iscsi_start || return
  iscsiadm -m discovery -t sendtargets -p "$SERVER:$PORT" >/tmp/disc.log 2>&1
  grep -q ",1 $IQN\$" /tmp/disc.log && step "SendTargets lists $IQN" || bad "discovery: $(cat /tmp/disc.log)"
  iscsi_set node.session.auth.authmethod CHAP
  iscsi_set node.session.auth.username "$USER"
  iscsi_set node.session.auth.password "not-the-secret-at-all"
  if iscsi_node --login >/tmp/login.log 2>&1; then
    bad "login with a wrong CHAP secret succeeded"
    iscsi_logout
  else
    grep -q -i "authoriz\|authentic" /tmp/login.log && step "wrong CHAP secret refused" ||
      bad "wrong secret: unexpected failure: $(tail -1 /tmp/login.log)"
  fi

  iscsi_set node.session.auth.password "$SECRET"
  iscsi_login "with CHAP" || return
  b=$(basename "$DEV")
  dev=/sys/block/$b/device
  step "vendor '$(cat $dev/vendor)' model '$(cat $dev/model)' rev '$(cat $dev/rev)'"
  grep -q '^CASTOR' $dev/vendor || bad "vendor is not CASTOR"
  check_size "$DEV"
  # What sd made of the VPD pages and mode pages it read.
  # (sysfs gives binary attributes a size of 0: count the bytes.)
  [ "$(wc -c <$dev/vpd_pg80)" -gt 4 ] && [ "$(wc -c <$dev/vpd_pg83)" -gt 4 ] && step "VPD 0x80 and 0x83 read" ||
    bad "VPD 0x80/0x83 missing"
  [ -n "$(cat $dev/wwid 2>/dev/null)" ] && step "wwid $(cat $dev/wwid)" || bad "no wwid from VPD 0x83"
  sd=$(ls -d $dev/scsi_disk/* 2>/dev/null | head -1)
  [ "$(cat $sd/cache_type)" = "write back" ] && step "caching mode page: write back" || bad "cache_type: $(cat $sd/cache_type)"
  [ "$(cat $sd/provisioning_mode)" = unmap ] && step "logical block provisioning: unmap" || bad "provisioning_mode: $(cat $sd/provisioning_mode)"
  [ "$(cat /sys/block/$b/queue/rotational)" = 0 ] && step "not rotational (VPD 0xB1)" || bad "rotational"
  [ "$(cat /sys/block/$b/queue/discard_max_bytes)" -gt 0 ] || bad "no discard"
  dmesg | grep -i "sense key" >/tmp/err.log && bad "sense data in dmesg: $(head -3 /tmp/err.log)"
  raw_io "$DEV"
  blkdiscard -o 0 -l 1048576 "$DEV" && step "blkdiscard (UNMAP) ok" || bad "blkdiscard"
  fs_write "$DEV" || return
  iscsi_logout
  step "files written, unmounted, logged out"

  # Again with mutual CHAP and CRC32C header and data digests.
  iscsi_set node.session.auth.username_in "$TUSER"
  iscsi_set node.session.auth.password_in "$TSECRET"
  iscsi_set "node.conn[0].iscsi.HeaderDigest" CRC32C
  iscsi_set "node.conn[0].iscsi.DataDigest" CRC32C
  iscsi_login "with mutual CHAP and digests" || return
  fs_verify "$DEV" "after login with mutual CHAP and digests"
  dd if="$DEV" of=/dev/null bs=1M count="$MB" iflag=direct 2>/dev/null || bad "read with digests"
  dmesg | grep -i "sense key" >/tmp/err.log && bad "sense data in dmesg: $(head -3 /tmp/err.log)"
  iscsi_logout
  iscsiadm -m session 2>&1 | grep -q "No active sessions" && step "logged out" || bad "a session is left"
}

# A replicated volume (a nexus of two replicas, published over PROTO) while the host fails
# one replica and then rebuilds a new one: the kernel must see no error and read back all
# it wrote. The guest follows the nexus through the engine's metrics (METRICS_PORT).
nexus_state() {  # prints online|degraded|faulted
  wget -q -O - "http://$SERVER:$METRICS_PORT/metrics" 2>/dev/null |
    sed -n 's/^castor_nexus_state{nexus="nx",state="\([a-z]*\)"} 1$/\1/p'
}
wait_nexus() {  # STATE SECONDS
  n=0
  while [ "$(nexus_state)" != "$1" ] && [ $n -lt $(($2 * 10)) ]; do usleep 100000; n=$((n + 1)); done
  [ "$(nexus_state)" = "$1" ]
}
# fio random 4 KiB writes of the whole first MB MiB at QD16, verified when written; runs in
# the background (FIO_PID), its verdict by fio_done.
fio_start() {
  fio --name=nexus --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite \
    --bs=4k --size="${MB}M" --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 \
    --output=/tmp/fio-$1.log >/dev/null 2>&1 &
  FIO_PID=$!
}
fio_done() {  # WHAT
  wait $FIO_PID && grep -q "err= 0" /tmp/fio-$1.log && step "fio verify passed $2" ||
    bad "fio $2: $(grep -m1 -i -E 'error|verify|err=' /tmp/fio-$1.log)"
}

nexus_scenario() {
  proto=${MODE%-nexus}
  case $proto in
    nbd) network; modprobe nbd nbds_max=2 || { bad "modprobe nbd"; return; }; nbd_connect -b 4096 || return; DEV=/dev/nbd0 ;;
    iscsi) iscsi_start || return; iscsi_login "to the nexus" || return ;;
    nvmf) nvme_start || return; connect || return ;;
  esac
  [ "$(nexus_state)" = online ] && step "nexus online" || bad "nexus is '$(nexus_state)', not online (metrics port $METRICS_PORT)"

  fio_start fault
  step "writing: fail a replica now"
  if wait_nexus degraded 60; then
    kill -0 $FIO_PID 2>/dev/null && step "nexus degraded while fio was writing" || bad "fio ended before the fault"
  else
    bad "the nexus did not degrade"
  fi
  fio_done fault "through the replica's failure"

  fio_start rebuild
  step "writing: add a replica now"
  if wait_nexus online 120; then
    kill -0 $FIO_PID 2>/dev/null && step "nexus online again while fio was writing (rebuilt, failed replica removed)" ||
      bad "fio ended before the rebuild did"
  else
    bad "nexus is $(nexus_state)"
  fi
  fio_done rebuild "during the rebuild"
  dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null
  fs_write "$DEV" || return
  case $proto in
    nbd) nbd_disconnect; nbd_connect -b 4096 || return ;;
    iscsi) iscsi_logout; iscsi_login "again" || return ;;
    nvmf) disconnect; connect || return ;;
  esac
  fs_verify "$DEV" "after reconnecting"
  case $proto in
    nbd) nbd_disconnect ;;
    iscsi) iscsi_logout ;;
    nvmf) disconnect ;;
  esac
  step "done"
}

# The engine is killed (kill -9) once the guest's write is acknowledged, and restarted on
# the same address: the kernel's recovery (iSCSI session recovery, NVMe controller
# reconnect) connects again by itself, the I/O queued meanwhile completes, and what was
# acknowledged before the crash reads back.
session_state() {  # LOGGED_IN / live when connected
  case $proto in
    iscsi) cat /sys/class/iscsi_session/session*/state 2>/dev/null | head -1 ;;
    nvmf) cat /sys/class/nvme/$(basename "$CTRL")/state 2>/dev/null ;;
  esac
}
restart_scenario() {
  proto=${MODE%-restart}
  case $proto in
    iscsi)
      iscsi_start || return
      iscsi_set node.session.timeo.replacement_timeout 60
      iscsi_login "" || return
      up=LOGGED_IN
      ;;
    nvmf) nvme_start || return; connect --reconnect-delay=1 --ctrl-loss-tmo=60 || return; up=live ;;
  esac
  dd if=/dev/urandom of=/tmp/pattern bs=1M count="$MB" 2>/dev/null
  dd if=/tmp/pattern of="$DEV" bs=1M oflag=direct conv=fsync 2>/dev/null || { bad "write"; return; }
  step "written: kill the engine now"
  n=0
  while [ "$(session_state)" = $up ] && [ $n -lt 300 ]; do usleep 100000; n=$((n + 1)); done
  [ "$(session_state)" != $up ] && step "connection lost (state $(session_state))" || bad "the initiator never noticed"
  # Issued while the engine is down: queued by the kernel until the session is back.
  dd if="$DEV" of=/tmp/back bs=1M count="$MB" iflag=direct 2>/dev/null || bad "read across the restart"
  cmp -s /tmp/pattern /tmp/back && step "read back after the engine restarted" || bad "data differs after the restart"
  [ "$(session_state)" = $up ] && step "session recovered" || bad "state is $(session_state)"
  dd if=/dev/urandom of=/tmp/pattern2 bs=1M count="$MB" 2>/dev/null
  dd if=/tmp/pattern2 of="$DEV" bs=1M seek="$MB" oflag=direct conv=fsync 2>/dev/null || bad "write after recovery"
  dd if="$DEV" of=/tmp/back2 bs=1M skip="$MB" count="$MB" iflag=direct 2>/dev/null || bad "read after recovery"
  cmp -s /tmp/pattern2 /tmp/back2 && step "written and read back after recovery" || bad "data differs after recovery"
  case $proto in
    iscsi) iscsi_logout; iscsiadm -m session 2>&1 | grep -q "No active sessions" && step "logged out" || bad "a session is left" ;;
    nvmf) disconnect; [ -z "$(ls /sys/class/nvme 2>/dev/null)" ] && step "disconnected" || bad "a controller is left" ;;
  esac
}

# castor-csi's node plugin, driven from the host (tests/vm/csi_node_test.py): the guest
# only provides the kernel, the initiators and the tools; the driver makes every CSI call
# and inspects the guest through the shell on port 2323. The guest powers off when the
# plugin exits (the driver stops QEMU) or after castor.serve_s seconds.
csi_node_scenario() {
  network
  for m in nvme-tcp ext4 xfs nbd iscsi_tcp sd_mod; do modprobe $m || bad "modprobe $m"; done
  mkdir -p /run/lock/iscsi /var/lib/iscsi /var/lib/castor-csi /var/lib/kubelet
  echo "InitiatorName=iqn.2026-11.io.castor:$NODE" >/etc/iscsi/initiatorname.iscsi
  iscsid -f >/tmp/iscsid.log 2>&1 &
  nc -ll -p 2323 -e /bin/sh &
  [ -x /usr/bin/castor-csi ] || { bad "castor-csi is not in the initramfs"; return; }
  follow=""
  [ -n "$CONTROL" ] && follow="--control $CONTROL --path-check-ms 1000"
  /usr/bin/castor-csi --mode node --endpoint tcp://0.0.0.0:10199 --node-name "$NODE" \
    --state-dir /var/lib/castor-csi --log-level debug $follow >/dev/console 2>&1 &
  csi=$!
  step "castor-csi node plugin started (pid $csi)"
  n=0
  while kill -0 $csi 2>/dev/null && [ $n -lt "$SERVE_S" ]; do sleep 1; n=$((n + 1)); done
  kill -0 $csi 2>/dev/null && bad "the driver did not finish within $SERVE_S s"
}

case "$MODE" in
  nvme) nvme_scenario ;;
  csi-node) csi_node_scenario ;;
  nbd) nbd_scenario ;;
  iscsi) iscsi_scenario ;;
  nbd-nexus | iscsi-nexus | nvmf-nexus) nexus_scenario ;;
  iscsi-restart | nvmf-restart) restart_scenario ;;
  *) bad "unknown castor.mode=$MODE" ;;
esac
end
