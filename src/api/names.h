#pragma once
// The API's names for bdev operation types, fault modes and I/O error statuses. These
// strings are part of the wire format (proto fields, castorctl flags, metric labels),
// so they are defined here rather than borrowed from the bdev layer's debug names.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bdev/bdev.h"
#include "bdev/modules/fault.h"
#include "common/status.h"

namespace castor::api {

// "read", "write", "flush", "unmap", "write_zeroes", "reset".
const char* op_name(bdev::IoType t);
// Errors: InvalidArgument naming `s` and the accepted names.
Result<bdev::IoType> parse_op(std::string_view s);
// io_type_bit() mask of every operation type.
inline constexpr uint32_t kAllOpsMask = (1u << bdev::kNumIoTypes) - 1;
// Mask of the named operations; "all" selects every type. An empty list yields `def`.
// Errors: InvalidArgument on an unknown name.
Result<uint32_t> parse_op_mask(const std::vector<std::string>& names, uint32_t def);
// Names of the operations in `mask`, in IoType order.
std::vector<std::string> op_names(uint32_t mask);
// "a,b,c".
std::string join_names(const std::vector<std::string>& names, std::string_view sep = ",");

// "error", "delay", "hang", "drop".
const char* fault_mode_string(bdev::FaultMode m);
// Empty selects "error". Errors: InvalidArgument.
Result<bdev::FaultMode> parse_fault_mode(std::string_view s);

// "ok", "io_error", "no_space", "aborted", "timed_out", "invalid".
const char* io_status_string(bdev::IoStatus s);
// Empty selects "io_error"; "ok" is rejected. Errors: InvalidArgument.
Result<bdev::IoStatus> parse_error_status(std::string_view s);

}  // namespace castor::api
