#include "myelin/core/postgres_url.hpp"

#include <charconv>
#include <optional>

#include <fmt/format.h>

namespace myelin {

namespace {

Error bad_url(std::string_view url, std::string_view what) {
    return errors::internal(
        fmt::format("config key 'database.url' has the value \"{}\"; expected "
                    "\"postgresql://user[:password]@host[:port]/database\" ({})",
                    redact_postgres_url(url), what));
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Decodes %XX escapes; nullopt on a malformed escape or an escaped NUL byte.
std::optional<std::string> percent_decode(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out.push_back(in[i]);
            continue;
        }
        if (i + 2 >= in.size()) return std::nullopt;
        const int hi = hex_value(in[i + 1]);
        const int lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return std::nullopt;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

std::string_view strip_scheme(std::string_view url) {
    for (std::string_view scheme : {"postgresql://", "postgres://"}) {
        if (url.substr(0, scheme.size()) == scheme) return url.substr(scheme.size());
    }
    return {};
}

}  // namespace

std::string PostgresUrl::redacted() const {
    const bool v6 = host.find(':') != std::string::npos;
    return fmt::format("postgresql://{}{}@{}{}{}:{}/{}", user, password.empty() ? "" : ":***",
                       v6 ? "[" : "", host, v6 ? "]" : "", port, dbname);
}

std::string redact_postgres_url(std::string_view url) {
    const std::size_t scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos) return std::string(url);
    const std::size_t authority = scheme_end + 3;
    std::size_t path = url.find('/', authority);
    if (path == std::string_view::npos) path = url.size();
    const std::size_t at = url.rfind('@', path);
    if (at == std::string_view::npos || at < authority) return std::string(url);
    const std::size_t colon = url.find(':', authority);
    if (colon == std::string_view::npos || colon > at) return std::string(url);
    return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

Result<PostgresUrl> parse_postgres_url(std::string_view url) {
    std::string_view rest = strip_scheme(url);
    if (rest.empty()) return bad_url(url, "the scheme must be postgresql:// or postgres://");
    if (rest.find('?') != std::string_view::npos || rest.find('#') != std::string_view::npos) {
        return bad_url(url, "query parameters are not supported; use the [database] keys");
    }
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return bad_url(url, "the database name is missing");
    std::string_view authority = rest.substr(0, slash);
    std::string_view db = rest.substr(slash + 1);
    const std::size_t at = authority.rfind('@');
    if (at == std::string_view::npos) return bad_url(url, "the user name is missing");
    std::string_view userinfo = authority.substr(0, at);
    std::string_view hostport = authority.substr(at + 1);

    PostgresUrl out;
    const std::size_t colon = userinfo.find(':');
    auto user = percent_decode(userinfo.substr(0, colon));
    if (!user || user->empty()) return bad_url(url, "the user name is missing or malformed");
    out.user = std::move(*user);
    if (colon != std::string_view::npos) {
        auto password = percent_decode(userinfo.substr(colon + 1));
        if (!password) return bad_url(url, "the password has a malformed %-escape");
        out.password = std::move(*password);
    }

    std::string_view port;
    if (!hostport.empty() && hostport.front() == '[') {
        const std::size_t close = hostport.find(']');
        if (close == std::string_view::npos) return bad_url(url, "an IPv6 host lacks its ']'");
        out.host = std::string(hostport.substr(1, close - 1));
        std::string_view after = hostport.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return bad_url(url, "junk after the IPv6 host");
            port = after.substr(1);
            if (port.empty()) return bad_url(url, "the port is empty");
        }
    } else {
        const std::size_t port_colon = hostport.find(':');
        out.host = std::string(hostport.substr(0, port_colon));
        if (port_colon != std::string_view::npos) {
            port = hostport.substr(port_colon + 1);
            if (port.empty()) return bad_url(url, "the port is empty");
        }
    }
    if (out.host.empty()) return bad_url(url, "the host is missing");
    if (!port.empty()) {
        unsigned value = 0;
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
            return bad_url(url, "the port must be a number from 1 to 65535");
        }
        out.port = static_cast<std::uint16_t>(value);
    }
    auto dbname = percent_decode(db);
    if (!dbname || dbname->empty() || dbname->find('/') != std::string::npos) {
        return bad_url(url, "the database name is missing or malformed");
    }
    out.dbname = std::move(*dbname);
    return out;
}

}  // namespace myelin
