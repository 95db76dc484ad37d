#pragma once
// Private to the nvmf bdev module (src/nvmf/host): the addresses of an nvmf:// URI.
// NvmfHostOptions (nvmf_bdev.h) holds the rest of what the URI says; both are parsed in
// options.cc.

#include <vector>

#include "common/status.h"
#include "common/uri.h"
#include "reactor/tcp.h"

namespace castor::nvmf::host {

// The URI's own address, then each of `paths` (HOST:PORT, comma-separated; an IPv6 host
// in brackets). Errors: InvalidArgument (a malformed or repeated address), NotFound (a
// host that does not resolve).
Result<std::vector<reactor::SockAddr>> path_addresses(const Uri& uri);

}  // namespace castor::nvmf::host
