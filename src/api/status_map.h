#pragma once
// Translation of Castor errors to gRPC status codes, the one place that decides how an
// engine error looks to a client.

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace castor::api {

// Maps `code` to its gRPC status code:
//   InvalidArgument -> INVALID_ARGUMENT   NotFound    -> NOT_FOUND
//   AlreadyExists   -> ALREADY_EXISTS     Busy        -> FAILED_PRECONDITION
//   NoSpace         -> RESOURCE_EXHAUSTED Unsupported -> UNIMPLEMENTED
//   TimedOut        -> DEADLINE_EXCEEDED  Ok          -> OK
//   anything else   -> INTERNAL
grpc::StatusCode to_grpc_code(Errc code);

// The gRPC status for `s`: its mapped code and its message flattened to one line
// (newlines become spaces). An empty message on an error becomes the error's name.
grpc::Status to_grpc(const Status& s);

}  // namespace castor::api
