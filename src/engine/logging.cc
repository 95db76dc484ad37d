#include "engine/logging.h"

#include <grpc/support/log.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <chrono>
#include <nlohmann/json.hpp>

namespace castor::engine {

void JsonLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  using namespace std::chrono;
  auto since_epoch = msg.time.time_since_epoch();
  auto secs = duration_cast<seconds>(since_epoch);
  auto micros = duration_cast<microseconds>(since_epoch - secs).count();
  time_t t = static_cast<time_t>(secs.count());
  tm utc{};
  gmtime_r(&t, &utc);
  char ts[64];
  size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &utc);
  snprintf(ts + n, sizeof(ts) - n, ".%06lldZ", static_cast<long long>(micros));

  auto level = spdlog::level::to_string_view(msg.level);
  nlohmann::ordered_json j;
  j["ts"] = ts;
  j["level"] = std::string(level.data(), level.size());
  j["logger"] = std::string(msg.logger_name.data(), msg.logger_name.size());
  j["msg"] = std::string(msg.payload.data(), msg.payload.size());
  // Invalid UTF-8 in a message is replaced rather than failing the log call.
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  dest.append(line.data(), line.data() + line.size());
}

std::unique_ptr<spdlog::formatter> JsonLogFormatter::clone() const {
  return std::make_unique<JsonLogFormatter>();
}

namespace {

// gRPC core's own messages (at GRPC_VERBOSITY, default ERROR) go through spdlog, so
// they respect --log-format and stay one line each.
void grpc_log_to_spdlog(gpr_log_func_args* args) {
  spdlog::level::level_enum level = spdlog::level::err;
  switch (args->severity) {
    case GPR_LOG_SEVERITY_DEBUG:
      level = spdlog::level::debug;
      break;
    case GPR_LOG_SEVERITY_INFO:
      level = spdlog::level::info;
      break;
    case GPR_LOG_SEVERITY_ERROR:
      level = spdlog::level::err;
      break;
  }
  spdlog::log(level, "grpc: {} ({}:{})", args->message, args->file, args->line);
}

}  // namespace

void setup_logging(LogFormat format, spdlog::level::level_enum level) {
  spdlog::drop("castor");
  std::shared_ptr<spdlog::logger> logger;
  if (format == LogFormat::kJson) {
    logger = spdlog::stderr_logger_mt("castor");
  } else {
    logger = spdlog::stderr_color_mt("castor");
  }
  spdlog::set_default_logger(logger);
  if (format == LogFormat::kJson) {
    spdlog::set_formatter(std::make_unique<JsonLogFormatter>());
  } else {
    spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%^%l%$] %v");
  }
  spdlog::set_level(level);
  spdlog::flush_on(spdlog::level::trace);
  gpr_set_log_function(grpc_log_to_spdlog);
}

}  // namespace castor::engine
