#!/usr/bin/env bash
# Builds the test guest: Debian 12's own kernel plus a busybox initramfs carrying
# nvme-cli, e2fsprogs, xfsprogs, nbd-client, open-iscsi (iscsid, iscsiadm) and fio, all taken from
# Debian packages (apt-get download, never installed on the host).
# Output: $GUEST_DIR/{vmlinuz,initramfs.gz}.
# Idempotent: rebuilds only when this script or the guest init changed.
#
#   tests/vm/make-guest.sh [GUEST_DIR]     (default build/guest)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-build/guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp="$out/.stamp"
want=$(cat "$here/make-guest.sh" "$here/init.sh" | sha256sum | cut -c1-16)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$out/vmlinuz" && -f "$out/initramfs.gz" ]]; then
  exit 0
fi
debs="$out/debs" tree="$out/tree" root="$out/root"
mkdir -p "$debs"
say() { echo "[make-guest] $*" >&2; }

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -1)
if [[ -z "$kpkg" ]]; then
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -1)
fi
kver=${kpkg#linux-image-}
tools=(busybox-static nvme-cli e2fsprogs xfsprogs nbd-client open-iscsi fio)

# Library closure of the tools (only lib* and zlib packages: no debconf, no perl).
pkgs=" ${tools[*]} "
frontier="${tools[*]}"
while [[ -n "$frontier" ]]; do
  next=""
  for d in $(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
               --no-enhances $frontier 2>/dev/null | awk '$1 ~ /Depends:$/ {print $2}' |
             grep -E '^(lib[a-z0-9.+-]+|zlib1g)$' | sort -u); do
    [[ "$pkgs" == *" $d "* ]] && continue
    pkgs+="$d "
    next+=" $d"
  done
  frontier=$next
done
real=$(apt-cache show --no-all-versions "$kpkg" $pkgs 2>/dev/null | sed -n 's/^Package: //p' | sort -u)
missing=()
for p in $real; do compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p"); done
if ((${#missing[@]})); then
  say "downloading ${#missing[@]} Debian packages"
  (cd "$debs" && apt-get download -qq "${missing[@]}" >/dev/null 2>&1) || { say "apt-get download failed"; exit 1; }
fi

rm -rf "$tree" "$root"
mkdir -p "$tree"
for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$tree"; done
bb="$tree/bin/busybox"
mods="$tree/lib/modules/$kver"
[[ -x "$bb" && -d "$mods" ]] || { say "kernel or busybox missing from the packages"; exit 1; }
cp "$tree/boot/vmlinuz-$kver" "$out/vmlinuz"

mkdir -p "$root"/{bin,sbin,usr/sbin,usr/bin,lib64,lib/x86_64-linux-gnu,etc/nvme,etc/iscsi,proc,sys,dev,tmp,run,mnt}
cp "$bb" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
ln -s ../bin/busybox "$root/sbin/modprobe"
cp "$tree/etc/mke2fs.conf" "$root/etc/"
cp "$tree/etc/iscsi/iscsid.conf" "$root/etc/iscsi/"
printf 'root:x:0:0::/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

# Binaries and the libraries they load, resolved by the packaged dynamic loader.
ld="$tree/lib64/ld-linux-x86-64.so.2"
libpath="$tree/lib/x86_64-linux-gnu:$tree/usr/lib/x86_64-linux-gnu"
cp "$ld" "$root/lib64/"
for b in usr/sbin/nvme sbin/mke2fs sbin/resize2fs sbin/mkfs.xfs usr/sbin/xfs_growfs sbin/nbd-client \
         sbin/iscsid sbin/iscsiadm usr/bin/fio; do
  mkdir -p "$root/$(dirname "$b")"
  cp "$tree/$b" "$root/$b"
  "$ld" --library-path "$libpath" --list "$tree/$b" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' |
    while read -r l; do cp -L "$l" "$root/lib/x86_64-linux-gnu/"; done
done
ln -s mke2fs "$root/sbin/mkfs.ext4"

# Kernel modules the tests load, with their dependencies.
"$bb" depmod -b "$tree" "$kver"
declare -A have=()
copy_mod() {
  local rel=$1
  [[ -n "${have[$rel]:-}" ]] && return
  have[$rel]=1
  mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
  cp "$mods/$rel" "$root/lib/modules/$kver/$rel"
  local dep
  for dep in $(awk -F': *' -v m="$rel" '$1 == m {print $2}' "$mods/modules.dep"); do copy_mod "$dep"; done
}
for m in nvme-tcp nvme-fabrics nvme-core ext4 xfs nbd iscsi_tcp sd_mod virtio_net virtio_pci crc32c_generic crc32c-intel; do
  rel=$(awk -F: -v a="${m//-/_}.ko" -v b="${m//_/-}.ko" '{n=split($1, p, "/"); if (p[n] == a || p[n] == b) {print $1; exit}}' "$mods/modules.dep")
  [[ -n "$rel" ]] && copy_mod "$rel"
done
cp "$mods"/modules.builtin* "$mods"/modules.order "$root/lib/modules/$kver/" 2>/dev/null || true
"$bb" depmod -b "$root" "$kver"

install -m 0755 "$here/init.sh" "$root/init"
(cd "$root" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc 2>/dev/null | "$bb" gzip -6) >"$out/initramfs.gz"
echo "$want" >"$stamp"
say "guest ready: kernel $kver, $(du -h "$out/initramfs.gz" | cut -f1) initramfs"
