#pragma once

// The `[database] url` of a PostgreSQL database, "postgresql://user[:password]@host[:port]/db"
// (or "postgres://..."), parsed into its parts. Used by the config (validation) and by the app
// (to open the backend). The password never appears in anything meant for logs or messages:
// redacted() and redact_postgres_url() replace it.
//
// Thread-safety: plain values and pure functions.

#include <cstdint>
#include <string>
#include <string_view>

#include "myelin/core/error.hpp"

namespace myelin {

struct PostgresUrl {
    std::string user;      // percent-decoded; never empty
    std::string password;  // percent-decoded; empty when the URL has none
    std::string host;      // a name or an address (IPv6 without its brackets)
    std::uint16_t port = 5432;
    std::string dbname;  // percent-decoded; never empty

    // "postgresql://user@host:port/db", with ":***" after the user when there is a password.
    std::string redacted() const;
};

// Parses `url`. Errors (500 M_UNKNOWN) say what is wrong and quote the URL only in its redacted
// form (see redact_postgres_url): a missing user, host or database name, a bad port, a bad
// percent-escape, or query parameters (not supported: every setting has its own config key).
[[nodiscard]] Result<PostgresUrl> parse_postgres_url(std::string_view url);

// `url` with whatever stands between "scheme://user:" and the last '@' before the path replaced
// by "***". Works on URLs that do not parse, for error messages.
std::string redact_postgres_url(std::string_view url);

}  // namespace myelin
