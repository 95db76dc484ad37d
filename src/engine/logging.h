#pragma once
// Process-wide logging for castor-engine: every spdlog logger writes to stderr, either
// as text or as one JSON object per line: {"ts":..., "level":..., "logger":..., "msg":...}.

#include <spdlog/formatter.h>

#include <memory>

#include "engine/config.h"

namespace castor::engine {

// Formats a record as one JSON line. `ts` is UTC ISO 8601 with microseconds.
class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// Installs the default logger ("castor", stderr) with `format` and `level`, and applies
// both to every logger registered with spdlog now or later, and routes gRPC core's log
// messages into it. Call before starting threads that log.
void setup_logging(LogFormat format, spdlog::level::level_enum level);

}  // namespace castor::engine
