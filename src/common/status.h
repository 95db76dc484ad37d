#pragma once
// Errors as values: every fallible Castor call returns Status or Result<T>.
// Exceptions are used only at process edges (argument parsing, gRPC glue).

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace castor {

enum class Errc {
  kOk = 0,
  kInvalidArgument,  // malformed input: bad URI, size, alignment, range
  kNotFound,         // unknown bdev, rule, ...
  kAlreadyExists,    // duplicate name
  kBusy,             // resource in use (open descriptors, claimed)
  kNoSpace,
  kIoError,
  kUnsupported,
  kTimedOut,
  kAborted,      // a conflicting operation is in flight: retry later
  kUnavailable,  // a peer (engine, store, leader) cannot be reached now
  kInternal,
};

const char* errc_name(Errc c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const { return code_ == Errc::kOk; }
  explicit operator bool() const { return is_ok(); }
  Errc code() const { return code_; }
  const std::string& message() const { return message_; }
  // "NotFound: bdev 'x' does not exist"
  std::string to_string() const;

 private:
  Errc code_ = Errc::kOk;
  std::string message_;
};

template <class... Args>
Status make_error(Errc code, fmt::format_string<Args...> f, Args&&... args) {
  return Status(code, fmt::format(f, std::forward<Args>(args)...));
}

// Result<T> holds a T or a non-ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Status s) : v_(std::move(s)) { assert(!std::get<Status>(v_).is_ok()); }

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T& value() const& { return std::get<T>(v_); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }

 private:
  std::variant<T, Status> v_;
};

}  // namespace castor
