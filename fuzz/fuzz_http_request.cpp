// libFuzzer target: one HTTP/1.1 request read the way http/server.cpp reads it, then routed and
// answered by the real ClientDispatcher over the real route table (client and admin routes).
//
// Reading mirrors Connection::serve_one(): a Beast request_parser<string_body> with its fields in
// a per-request pmr arena, header_limit from ServerLimits, no body limit until the route's is
// known (then refused early on Content-Length, else enforced by the parser), the header fed from
// a buffer that fills in chunks (the first input byte picks the chunk size, as bytes arriving in
// several reads), and the whole header's size checked against the limit. The target is split by
// http::parse_target, the same function the server calls. Dispatching runs handle_now() only,
// with the rate limiter on (trusting X-Forwarded-For from the fake peer): answers that need
// storage or password hashing (handle()) are not run here; their body decoders have their own
// target, fuzz_json_bodies.
//
// The services are the real ones over a SQLite database in a temporary folder, built once.

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <memory_resource>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "myelin/api/admin/routes.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/api/dispatcher.hpp"
#include "myelin/api/router.hpp"
#include "myelin/auth/password_hasher.hpp"
#include "myelin/auth/server_secret.hpp"
#include "myelin/auth/sodium_init.hpp"
#include "myelin/auth/successor_seal.hpp"
#include "myelin/auth/token_cache.hpp"
#include "myelin/auth/token_hasher.hpp"
#include "myelin/core/clock.hpp"
#include "myelin/core/config.hpp"
#include "myelin/core/log.hpp"
#include "myelin/events/signing_key.hpp"
#include "myelin/http/server.hpp"
#include "myelin/http/target.hpp"
#include "myelin/service/account_service.hpp"
#include "myelin/service/admin_service.hpp"
#include "myelin/service/device_service.hpp"
#include "myelin/service/rate_limiter.hpp"
#include "myelin/service/registration_tokens.hpp"
#include "myelin/service/room_service.hpp"
#include "myelin/service/session_service.hpp"
#include "myelin/service/uia.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "fuzz_check.hpp"

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using namespace myelin;

const http::ServerLimits kLimits;  // the server's defaults: 16 KiB header, 64 KiB body

// A fresh folder under the temp directory for the database; removed at exit.
std::filesystem::path make_scratch_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "myelin-fuzz-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) {
        std::perror("mkdtemp");
        std::abort();
    }
    return pattern;
}

Config make_config(const std::filesystem::path& dir) {
    Config c;
    c.config_dir = dir;
    c.database.sqlite_path = dir / "homeserver.db";
    c.key_file = dir / "myelin.key";
    c.public_baseurl = "http://127.0.0.1:8008/";
    // Buckets large enough never to refuse: the limiter's paths run, its answers stay 2xx/4xx
    // of the route.
    for (BucketConfig* b :
         {&c.rate_limits.client_ip, &c.rate_limits.login, &c.rate_limits.failed_login,
          &c.rate_limits.registration, &c.rate_limits.refresh, &c.rate_limits.token_validity}) {
        *b = BucketConfig{1e9, 1e9};
    }
    c.rate_limits.exempt_users = {"@bot:localhost"};
    c.passwords.argon2_memory_kib = 1024;
    c.passwords.argon2_iterations = 1;
    return c;
}

std::unique_ptr<storage::Database> open_database(const Config& c) {
    storage::SqliteOptions options;
    options.reader_threads = 1;
    options.durable = false;
    auto db = storage::open_sqlite(c.database.sqlite_path.string(), options);
    if (!db) {
        std::fprintf(stderr, "cannot open the fuzz database: %s\n", db.error().message.c_str());
        std::abort();
    }
    return std::move(*db);
}

auth::ServerSecret make_secret() {
    auth::ensure_sodium();
    return auth::ServerSecret::generate();
}

auth::PasswordParams password_params(const Config& c) {
    auth::PasswordParams p;
    p.memory_kib = c.passwords.argon2_memory_kib;
    p.iterations = c.passwords.argon2_iterations;
    p.max_password_bytes = c.passwords.max_length;
    return p;
}

// The application's object graph as app/app.cpp wires it, minus the HTTP servers and the
// background threads (housekeeping, activity tracking, revocation following). Never destroyed:
// it lives until the fuzzer exits.
struct Stack {
    Stack()
        : dir(make_scratch_dir()),
          config(make_config(dir)),
          db(open_database(config)),
          secret(make_secret()),
          token_hasher(secret),
          sealer(secret),
          password_hasher(password_params(config), 1, 0),
          rate_limit_store(4096),
          rate_limiter(config.rate_limits, config.server_name, rate_limit_store, clock),
          registration_tokens(*db, clock),
          uia(clock, password_hasher, *db, &registration_tokens, config.server_name),
          sessions(*db, token_hasher, sealer, cache, clock, config.tokens),
          accounts(*db, password_hasher, sessions, uia, registration_tokens, config, clock),
          devices(*db, sessions),
          signing_key(events::SigningKey::generate("fuzz")),
          rooms(*db, clock, config.server_name, signing_key),
          admin(*db, sessions),
          services{.config = config,
                   .sessions = sessions,
                   .accounts = accounts,
                   .uia = uia,
                   .registration_tokens = registration_tokens,
                   .devices = devices,
                   .client_data = client_data,
                   .rooms = rooms,
                   .sync = sync,
                   .typing = typing,
                   .receipts = receipts,
                   .signing_key = signing_key,
                   .clock = clock} {
        sessions.set_rate_limiter(&rate_limiter);
        accounts.set_rate_limiter(&rate_limiter);
        uia.set_rate_limiter(&rate_limiter);
        api::client::add_client_routes(router, services);
        api::admin::add_admin_routes(router, services, admin);
        dispatcher = std::make_unique<api::ClientDispatcher>(
            router, sessions, config.limits.max_body_bytes, &rate_limiter);
    }

    std::filesystem::path dir;
    Config config;
    SystemClock clock;
    std::unique_ptr<storage::Database> db;
    auth::ServerSecret secret;
    auth::TokenHasher token_hasher;
    auth::SuccessorSealer sealer;
    auth::TokenCache cache;
    auth::PasswordHasher password_hasher;
    service::InMemoryRateLimitStore rate_limit_store;
    service::RateLimiter rate_limiter;
    service::RegistrationTokens registration_tokens;
    service::UiaEngine uia;
    service::SessionService sessions;
    service::AccountService accounts;
    service::DeviceService devices;
    service::ClientDataServices client_data{*db, clock, config.server_name};
    events::SigningKey signing_key;
    service::RoomService rooms;
    service::UserNotifier notifier;
    service::TypingService typing{*db, clock};
    service::ReceiptService receipts{*db, clock};
    service::SyncService sync{*db, notifier, typing};
    service::AdminService admin;
    api::Services services;
    api::Router router;
    std::unique_ptr<api::ClientDispatcher> dispatcher;
};

Stack* g_stack = nullptr;

void remove_scratch_dir() {
    std::error_code ignored;
    if (g_stack) std::filesystem::remove_all(g_stack->dir, ignored);
}

http::Method to_method(bhttp::verb verb) {  // as in server.cpp
    switch (verb) {
        case bhttp::verb::get:
            return http::Method::kGet;
        case bhttp::verb::post:
            return http::Method::kPost;
        case bhttp::verb::put:
            return http::Method::kPut;
        case bhttp::verb::delete_:
            return http::Method::kDelete;
        case bhttp::verb::options:
            return http::Method::kOptions;
        case bhttp::verb::head:
            return http::Method::kHead;
        case bhttp::verb::patch:
            return http::Method::kPatch;
        default:
            return http::Method::kOther;
    }
}

using RequestParser =
    bhttp::request_parser<bhttp::string_body, std::pmr::polymorphic_allocator<char>>;

// Bytes of the input that "arrive" `chunk` at a time into `buffer`, as socket reads would.
class Arrivals {
public:
    Arrivals(std::string_view input, std::size_t chunk) : input_(input), chunk_(chunk) {}
    // Appends the next chunk to `buffer`; false at the end of the input (EOF).
    bool read_into(beast::flat_buffer& buffer) {
        if (input_.empty()) return false;
        const std::size_t n = std::min(chunk_, input_.size());
        auto out = buffer.prepare(n);
        std::memcpy(out.data(), input_.data(), n);
        buffer.commit(n);
        input_.remove_prefix(n);
        return true;
    }

private:
    std::string_view input_;
    std::size_t chunk_;
};

// The request header fields the dispatcher reads, as Connection::read_fields() takes them: the
// first line of each, every X-Forwarded-For line joined with ", ".
template <typename Message>
void read_fields(const Message& message, http::Request& request, std::string& forwarded) {
    bool authorization = false, content_type = false, user_agent = false, xff = false;
    for (const auto& field : message) {
        switch (field.name()) {
            case bhttp::field::authorization:
                if (!std::exchange(authorization, true)) request.authorization = field.value();
                break;
            case bhttp::field::content_type:
                if (!std::exchange(content_type, true)) request.content_type = field.value();
                break;
            case bhttp::field::user_agent:
                if (!std::exchange(user_agent, true)) request.user_agent = field.value();
                break;
            case bhttp::field::unknown:
                if (!beast::iequals(field.name_string(), "X-Forwarded-For")) break;
                if (std::exchange(xff, true)) forwarded += ", ";
                forwarded.append(field.value().data(), field.value().size());
                break;
            default:
                break;
        }
    }
    request.forwarded_for = forwarded;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    log::init("error");
    log::app()->set_level(spdlog::level::off);
    log::access()->set_level(spdlog::level::off);
    g_stack = new Stack();
    std::atexit(remove_scratch_dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using fuzz::require;
    // The server starts reading a request only once a byte of it has arrived (Connection::serve()
    // waits for one), so the parser always has some input before put_eof() (which asserts so).
    if (size < 2) return 0;
    // The first byte: how many bytes each "read" delivers (1 to 256).
    const std::size_t chunk = std::size_t{data[0]} + 1;
    Arrivals arrivals(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), chunk);

    std::array<std::byte, 2048> fields_buffer;
    std::pmr::monotonic_buffer_resource fields_arena(fields_buffer.data(), fields_buffer.size());
    std::optional<RequestParser> parser_slot;
    RequestParser& parser =
        parser_slot.emplace(std::piecewise_construct, std::make_tuple(),
                            std::make_tuple(std::pmr::polymorphic_allocator<char>(&fields_arena)));
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
        kLimits.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser.body_limit(boost::none);

    beast::flat_buffer buffer;
    boost::system::error_code ec;
    std::size_t header_bytes = 0;
    while (!parser.is_header_done()) {
        if (buffer.size() > 0) {
            const std::size_t used = parser.put(buffer.data(), ec);
            buffer.consume(used);
            header_bytes += used;
            if (ec == bhttp::error::need_more || (!ec && used == 0)) {
                ec = {};
            } else if (ec) {
                break;
            } else {
                continue;
            }
        }
        if (!arrivals.read_into(buffer)) {
            parser.put_eof(ec);
            if (!ec) ec = bhttp::error::partial_message;
            break;
        }
    }
    if (ec || header_bytes > kLimits.max_header_bytes) return 0;  // 400/431 or a closed peer

    auto& message = parser.get();
    http::Request request;
    std::string forwarded;
    request.method = to_method(message.method());
    request.method_text = std::string_view(message.method_string());
    request.target = std::string_view(message.target());
    request.remote_ip = "127.0.0.1";  // a trusted proxy: X-Forwarded-For is read
    request.request_id = "0000000000000000";
    if (!http::parse_target(request)) return 0;  // 400 M_UNRECOGNIZED
    require(request.path.find('\0') == std::string::npos, "decoded path holds a NUL");
    read_fields(message, request, forwarded);

    api::ClientDispatcher& dispatcher = *g_stack->dispatcher;
    if (!parser.is_done()) {
        const std::size_t body_limit = dispatcher.body_limit(request.method, request.path)
                                           .value_or(kLimits.default_body_bytes);
        if (auto length = parser.content_length(); length && *length > body_limit) return 0;
        parser.body_limit(static_cast<std::uint64_t>(body_limit));
        // What bhttp::async_read does with the parser: put what is buffered, read more.
        while (!parser.is_done()) {
            if (buffer.size() > 0) {
                const std::size_t used = parser.put(buffer.data(), ec);
                buffer.consume(used);
                if (ec == bhttp::error::need_more) {
                    ec = {};
                } else if (ec) {
                    return 0;  // 413 or 400
                } else if (used > 0) {
                    continue;
                }
            }
            if (!arrivals.read_into(buffer)) {
                parser.put_eof(ec);
                if (ec || !parser.is_done()) return 0;  // the client went away mid-body
                break;
            }
        }
        require(message.body().size() <= body_limit, "body over the route's limit was read");
    }
    request.body = std::move(message.body());

    std::optional<http::Response> response = dispatcher.handle_now(request);
    if (response) {
        require(response->status >= 100 && response->status <= 599, "answer with a bad status");
    }
    return 0;
}
