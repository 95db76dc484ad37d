#!/usr/bin/env bash
# The build enforces the layering: a library's include path holds its own folder only
# (castor_export_headers in the top-level CMakeLists.txt). Checks, with the compiler and
# the include directories each library's sources are compiled with (its own and those of
# what it links), that it sees its own headers and those below it, and not those of a
# layer above or beside it.
#
#   layering_test.sh CXX LIB=DIRS ...   (DIRS: the library's include dirs, ':'-separated)
set -uo pipefail
cxx=$1
shift
declare -A dirs
for a in "$@"; do dirs[${a%%=*}]=${a#*=}; done
fail=0
# sees LIB HEADER yes|no
sees() {
  local flags=() d
  IFS=':' read -ra ds <<<"${dirs[$1]}"
  for d in "${ds[@]}"; do flags+=("-I$d"); done
  local want=$3 expr="__has_include(\"$2\")"
  [[ $want == no ]] && expr="!$expr"
  if printf '#if !(%s)\n#error layering\n#endif\n' "$expr" | "$cxx" -std=c++20 -fsyntax-only -x c++ "${flags[@]}" - 2>/dev/null; then
    echo "ok    $1 sees $2: $want"
  else
    echo "FAIL  $1 sees $2: expected $want"
    fail=1
  fi
}
sees castor_reactor reactor/reactor.h yes
sees castor_reactor bdev/bdev.h no
sees castor_bdev bdev/bdev.h yes
sees castor_bdev reactor/tcp.h yes
sees castor_bdev pool/pool.h no
sees castor_bdev nexus/nexus.h no
sees castor_bdev nvmf/host/nvmf_bdev.h no
sees castor_pool pool/pool.h yes
sees castor_pool nexus/nexus.h no
sees castor_nexus nexus/nexus.h yes
sees castor_nexus api/front_ends.h no
sees castor_nvmf_target nvmf/target/target.h yes
sees castor_nvmf_target nvmf/host/nvmf_bdev.h no
sees castor_nvmf_target iscsi/target.h no
sees castor_nvmf_target frontend/front_end.h yes
sees castor_nbd frontend/front_end.h yes
sees castor_nbd iscsi/target.h no
sees castor_nbd api/front_ends.h no
sees castor_iscsi frontend/front_end.h yes
sees castor_iscsi nvmf/target/target.h no
sees castor_api api/front_ends.h yes
sees castor_api engine/config.h no
sees castor_control control/control_plane.h yes
sees castor_control nexus/nexus.h no
exit $fail
