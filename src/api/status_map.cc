#include "api/status_map.h"

#include <algorithm>

namespace castor::api {

grpc::StatusCode to_grpc_code(Errc code) {
  switch (code) {
    case Errc::kOk:
      return grpc::StatusCode::OK;
    case Errc::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case Errc::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case Errc::kAlreadyExists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case Errc::kBusy:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case Errc::kNoSpace:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case Errc::kUnsupported:
      return grpc::StatusCode::UNIMPLEMENTED;
    case Errc::kTimedOut:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case Errc::kUnavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case Errc::kIoError:
    case Errc::kAborted:
    case Errc::kInternal:
      break;
  }
  return grpc::StatusCode::INTERNAL;
}

grpc::Status to_grpc(const Status& s) {
  if (s.is_ok()) return grpc::Status::OK;
  std::string msg = s.message().empty() ? errc_name(s.code()) : s.message();
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  std::replace(msg.begin(), msg.end(), '\r', ' ');
  return grpc::Status(to_grpc_code(s.code()), msg);
}

}  // namespace castor::api
