#include "common/status.h"

namespace castor {

const char* errc_name(Errc c) {
  switch (c) {
    case Errc::kOk: return "Ok";
    case Errc::kInvalidArgument: return "InvalidArgument";
    case Errc::kNotFound: return "NotFound";
    case Errc::kAlreadyExists: return "AlreadyExists";
    case Errc::kBusy: return "Busy";
    case Errc::kNoSpace: return "NoSpace";
    case Errc::kIoError: return "IoError";
    case Errc::kUnsupported: return "Unsupported";
    case Errc::kTimedOut: return "TimedOut";
    case Errc::kAborted: return "Aborted";
    case Errc::kUnavailable: return "Unavailable";
    case Errc::kInternal: return "Internal";
  }
  return "Unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "Ok";
  return fmt::format("{}: {}", errc_name(code_), message_);
}

}  // namespace castor
