#pragma once
// Factories of the built-in bdev modules (one per file in this folder).
#include <memory>

#include "bdev/registry.h"

namespace castor::bdev {
std::unique_ptr<BdevModule> make_malloc_module();
std::unique_ptr<BdevModule> make_null_module();
std::unique_ptr<BdevModule> make_uring_module();  // uring:// (existing) and file:// (creates)
std::unique_ptr<BdevModule> make_file_module();
std::unique_ptr<BdevModule> make_fault_module();
}  // namespace castor::bdev
