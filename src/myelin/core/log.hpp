#pragma once

// Logging through spdlog. Two loggers, both asynchronous (a background thread writes them, so
// network threads never wait on I/O; on overflow the oldest lines are dropped, never blocking):
// the application log and the access log (one structured line per request). Neither ever gets a
// token, a password or an auth request body: callers pass only what they mean to log.

#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace myelin::log {

// Sets up both loggers on stderr. `level` is one of trace, debug, info, warn, error; unknown
// values mean info. Safe to call more than once (later calls replace the loggers).
void init(std::string_view level);

// The application logger (never null after init(); before it, a synchronous stderr logger).
std::shared_ptr<spdlog::logger> app();

// The access logger.
std::shared_ptr<spdlog::logger> access();

// Flushes and stops the background thread; call once at exit.
void shutdown();

// `target` with the value of every secret-bearing query parameter (access_token, token,
// refresh_token, password) and every secret path segment (the registration token in
// /_myelin/admin/v1/registration_tokens/{token}) replaced by "<redacted>".
std::string redact_target(std::string_view target);

}  // namespace myelin::log
