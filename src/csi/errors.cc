#include "csi/errors.h"

namespace castor::csi {

grpc::Status to_grpc(const Status& s) {
  using C = grpc::StatusCode;
  C code = C::INTERNAL;
  switch (s.code()) {
    case Errc::kOk: return grpc::Status::OK;
    case Errc::kInvalidArgument: code = C::INVALID_ARGUMENT; break;
    case Errc::kNotFound: code = C::NOT_FOUND; break;
    case Errc::kAlreadyExists: code = C::ALREADY_EXISTS; break;
    case Errc::kBusy: code = C::FAILED_PRECONDITION; break;
    case Errc::kNoSpace: code = C::RESOURCE_EXHAUSTED; break;
    case Errc::kUnsupported: code = C::OUT_OF_RANGE; break;
    case Errc::kAborted: code = C::ABORTED; break;
    case Errc::kUnavailable:
    case Errc::kTimedOut: code = C::UNAVAILABLE; break;
    case Errc::kIoError:
    case Errc::kInternal: code = C::INTERNAL; break;
  }
  return grpc::Status(code, s.message());
}

}  // namespace castor::csi
