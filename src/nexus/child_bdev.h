#pragma once
// Opening and closing a nexus child's bdev: a bdev:///name child is an existing bdev the
// nexus claims (never destroys); any other URI is created through the registry and owned
// (destroyed when the child goes). Private to the nexus library.

#include <memory>
#include <string>

#include "nexus/nexus.h"

namespace castor::nexus {

// What a nexus supports; a child must support each of these but Reset.
inline constexpr uint32_t kNexusOps =
    bdev::io_type_bit(bdev::IoType::kRead) | bdev::io_type_bit(bdev::IoType::kWrite) |
    bdev::io_type_bit(bdev::IoType::kFlush) | bdev::io_type_bit(bdev::IoType::kUnmap) |
    bdev::io_type_bit(bdev::IoType::kWriteZeroes) | bdev::io_type_bit(bdev::IoType::kReset);

// The I/O types `b` supports, as io_type_bit()s.
uint32_t ops_of(const bdev::Bdev& b);

// Opens (bdev:///name) or creates (any other URI) one child bdev and claims it for
// `nexus`. Errors: InvalidArgument (bad URI, a nexus as child), the create's or open's.
Result<std::shared_ptr<Child>> open_child_bdev(bdev::BdevRegistry& reg, const std::string& nexus,
                                               const std::string& uri);
// Closes the descriptor, releases the claim and destroys an owned bdev. Idempotent.
void close_child_bdev(bdev::BdevRegistry& reg, const std::string& nexus, Child& c);

}  // namespace castor::nexus
