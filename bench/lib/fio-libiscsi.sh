# Sourced by benches that drive iSCSI with fio. Debian's fio 3.33 has no libiscsi engine;
# the first call builds it from Debian's own fio source package as an external engine
# (.cache/fio-libiscsi/fio-libiscsi.so, ~1 min), using a private apt source list so the
# system's apt configuration is untouched. Prints the engine's path.
fio_libiscsi_engine() {
  local root so src ao
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  so=$root/.cache/fio-libiscsi/fio-libiscsi.so
  if [[ ! -f $so ]]; then
    echo "building fio's libiscsi engine (once)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libiscsi-dev libaio-dev dpkg-dev >/dev/null
    src=$root/.cache/fio-src
    mkdir -p "$src/lists/partial" "$(dirname "$so")"
    echo "deb-src http://deb.debian.org/debian bookworm main" >"$src/sources.list"
    ao=(-o Dir::Etc::SourceList="$src/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o Dir::State::Lists="$src/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
    apt-get "${ao[@]}" -q update >/dev/null
    (cd "$src" && { ls fio_*.dsc >/dev/null 2>&1 || apt-get "${ao[@]}" source --download-only fio >/dev/null 2>&1; } &&
      rm -rf fio-[0-9]*/ && dpkg-source -x fio_*.dsc >/dev/null &&
      cd fio-[0-9]*/ && ./configure --enable-libiscsi --dynamic-libengines --disable-native >/dev/null &&
      make -j"$(nproc)" >/dev/null && cp engines/fio-libiscsi.so "$so") >&2
  fi
  [[ -f $so ]] || { echo "cannot build fio's libiscsi engine" >&2; return 1; }
  echo "$so"
}
