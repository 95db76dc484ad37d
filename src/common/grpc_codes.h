#pragma once
// gRPC status codes as Castor's clients of gRPC services (castorctl, castor-control's
// engine client and store, the engine's control agent) read them: one name table and one
// mapping to Errc. Servers map the other way (api/status_map.h for the engine,
// control/service.h for castor-control), each with its own rule for Aborted.

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace castor {

// "NOT_FOUND", "UNAVAILABLE", ...; "UNKNOWN" for a code gRPC does not define.
const char* grpc_code_name(grpc::StatusCode code);

// The Errc a client reports for a peer's gRPC code:
//   INVALID_ARGUMENT, OUT_OF_RANGE -> InvalidArgument   NOT_FOUND -> NotFound
//   ALREADY_EXISTS -> AlreadyExists   FAILED_PRECONDITION -> Busy
//   RESOURCE_EXHAUSTED -> NoSpace     UNIMPLEMENTED -> Unsupported   ABORTED -> Aborted
//   UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED -> Unavailable (the peer could not answer)
//   anything else -> Internal
Errc errc_of(grpc::StatusCode code);

}  // namespace castor
