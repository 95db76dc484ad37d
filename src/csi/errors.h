#pragma once
// CSI's error scheme: a gRPC status code and a one-line message, status.details empty.
// Castor's Errc map to the codes the spec's tables name for each case.

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace castor::csi {

//   kInvalidArgument -> INVALID_ARGUMENT    kNotFound -> NOT_FOUND
//   kAlreadyExists -> ALREADY_EXISTS        kBusy -> FAILED_PRECONDITION
//   kNoSpace -> RESOURCE_EXHAUSTED          kUnsupported -> OUT_OF_RANGE (capacity)
//   kAborted -> ABORTED                     kUnavailable, kTimedOut -> UNAVAILABLE
//   kIoError, kInternal -> INTERNAL
grpc::Status to_grpc(const Status& s);

template <class... Args>
grpc::Status csi_error(grpc::StatusCode code, fmt::format_string<Args...> f, Args&&... args) {
  return grpc::Status(code, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace castor::csi
