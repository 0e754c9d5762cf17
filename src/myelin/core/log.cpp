#include "myelin/core/log.hpp"

#include <array>
#include <mutex>

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace myelin::log {
namespace {

std::mutex g_mutex;
std::shared_ptr<spdlog::logger> g_app;
std::shared_ptr<spdlog::logger> g_access;

std::shared_ptr<spdlog::logger> fallback(const char* name) {
    static std::shared_ptr<spdlog::logger> app_fallback = spdlog::stderr_logger_mt("myelin-early");
    (void)name;
    return app_fallback;
}

// Decodes %XX escapes and '+' so that "access%5Ftoken" is recognised as access_token.
std::string percent_decode(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '%' && i + 2 < in.size()) {
            int hi = hex(in[i + 1]);
            int lo = hex(in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out += in[i] == '+' ? ' ' : in[i];
    }
    return out;
}

}  // namespace

void init(std::string_view level) {
    std::lock_guard lock(g_mutex);
    // The queue's slots are allocated and touched up front, ~400 bytes each: 8,192 slots were
    // 3.3 MiB of the idle server's RSS (bench/README.md, "scale"). 2,048 still hold ~14 ms of
    // access-log lines at 150,000 requests/s before the oldest are overwritten.
    spdlog::init_thread_pool(2048, 1);
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto make = [&](const char* name) {
        spdlog::drop(name);
        auto logger = std::make_shared<spdlog::async_logger>(
            name, sink, spdlog::thread_pool(), spdlog::async_overflow_policy::overrun_oldest);
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %n %v", spdlog::pattern_time_type::utc);
        spdlog::register_logger(logger);
        return logger;
    };
    g_app = make("myelin");
    g_access = make("access");
    g_app->set_level(spdlog::level::from_str(std::string(level)));
    if (g_app->level() == spdlog::level::off && level != "off")
        g_app->set_level(spdlog::level::info);
    g_access->set_level(spdlog::level::info);
    g_app->flush_on(spdlog::level::warn);
}

std::shared_ptr<spdlog::logger> app() {
    std::lock_guard lock(g_mutex);
    return g_app ? g_app : fallback("myelin");
}

std::shared_ptr<spdlog::logger> access() {
    std::lock_guard lock(g_mutex);
    return g_access ? g_access : fallback("access");
}

void shutdown() {
    std::lock_guard lock(g_mutex);
    if (g_app) g_app->flush();
    if (g_access) g_access->flush();
    g_app.reset();
    g_access.reset();
    spdlog::shutdown();
}

namespace {

// Paths whose next segment is a secret (a registration token names itself in the admin API).
constexpr std::array<std::string_view, 1> kSecretSegmentAfter = {
    "/_myelin/admin/v1/registration_tokens/"};

// `path` with the secret segment of a kSecretSegmentAfter path replaced by "<redacted>".
std::string redact_path(std::string_view path) {
    for (auto prefix : kSecretSegmentAfter) {
        if (path.size() > prefix.size() && path.starts_with(prefix)) {
            const auto end = path.find('/', prefix.size());
            std::string out(prefix);
            out += "<redacted>";
            if (end != std::string_view::npos) out.append(path.substr(end));
            return out;
        }
    }
    return std::string(path);
}

}  // namespace

std::string redact_target(std::string_view target) {
    static constexpr std::array<std::string_view, 4> kSecretParams = {"access_token", "token",
                                                                      "refresh_token", "password"};
    auto q = target.find('?');
    if (q == std::string_view::npos) return redact_path(target);
    std::string out = redact_path(target.substr(0, q));
    out += '?';
    std::string_view query = target.substr(q + 1);
    bool first = true;
    while (true) {
        auto amp = query.find('&');
        std::string_view part = query.substr(0, amp);
        if (!first) out += '&';
        first = false;
        auto eq = part.find('=');
        std::string_view key = part.substr(0, eq);
        std::string decoded = percent_decode(key);
        bool secret = false;
        for (auto s : kSecretParams) secret = secret || decoded == s;
        if (secret && eq != std::string_view::npos) {
            out.append(key);
            out += "=<redacted>";
        } else {
            out.append(part);
        }
        if (amp == std::string_view::npos) break;
        query = query.substr(amp + 1);
    }
    return out;
}

}  // namespace myelin::log
