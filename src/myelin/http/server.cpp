// The HTTP/1.1 server declared in server.hpp, on Boost.Beast + Asio C++20 coroutines.
//
// Layout: small helpers (request ids, request conversion, server-made error answers), then
// Connection (one per accepted socket: the session coroutine, its deadline watchdog, the answers
// to requests that break a limit), Worker (one io_context, its SO_REUSEPORT acceptor and the
// shutdown sequence of its connections) and Core (binding, threads, stop/wait).
//
// Plain HTTP and native TLS: this file is compiled twice. On its own it is the plain-HTTP server
// (Stream = tcp::socket); tls_server.cpp includes it with MYELIN_HTTP_SERVER_TLS = 1 for the
// HTTPS server (Stream = TlsStream: a handshake first, the connection's TlsContext kept alive).
// Each build has its own anonymous namespace and only one kind of connection, so the plain
// path's code is exactly what it would be without TLS (one translation unit with both would
// change the compiler's inlining of the shared helpers). Server picks one build's Core.
//
// Threading: a Connection and its Worker are only touched on that worker's thread, so they need
// no locks. Cross-thread state is Shared::open_connections (atomic), Shared's TLS context and
// Core's lifecycle, guarded by its mutex; stop() reaches the workers by posting to their
// io_contexts. Network errors are values (as_tuple); exceptions are only expected from the
// Dispatcher and are caught around it.

#ifndef MYELIN_HTTP_SERVER_TLS
#define MYELIN_HTTP_SERVER_TLS 0  // tls_server.cpp sets it to 1
#endif

#include "myelin/http/server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <limits>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "myelin/core/error.hpp"
#include "myelin/core/log.hpp"
#include "myelin/http/connection_quota.hpp"
#include "myelin/http/cors.hpp"
#include "myelin/http/server_core.hpp"
#include "myelin/http/simple_request_head.hpp"
#include "myelin/http/target.hpp"

#if MYELIN_HTTP_SERVER_TLS
#include <boost/asio/ssl/stream_base.hpp>

#include "myelin/http/tls_context.hpp"
#include "myelin/http/tls_stream.hpp"
#endif

namespace myelin::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

// This build's connections: TLS (tls_server.cpp) or plain (server.cpp).
constexpr bool kTls = MYELIN_HTTP_SERVER_TLS != 0;
#if MYELIN_HTTP_SERVER_TLS
using Stream = TlsStream;
#else
using Stream = tcp::socket;
#endif

// After an accept error (EMFILE, ENOBUFS...) the acceptor waits this long before trying again,
// so a descriptor shortage does not spin the thread.
constexpr std::chrono::milliseconds kAcceptBackoff{50};
// A rejected connection (over max_connections) gets this long, in all, to take its 503; at most
// kMaxRejecting such answers are pending per thread, beyond that the socket is just closed.
constexpr std::chrono::milliseconds kRejectTimeout{1000};
constexpr std::size_t kMaxRejecting = 256;
// After answering a request that broke a limit, the server half-closes and reads (and drops)
// what the client still sends for this long, or this many bytes, before closing. Closing with
// unread input would send a RST that can destroy the answer before the client reads it.
constexpr std::chrono::milliseconds kLingerTimeout{2000};
constexpr std::size_t kLingerMaxBytes = 1024 * 1024;
constexpr std::size_t kLingerChunk = 16 * 1024;
// A connection's read buffer keeps up to this much capacity between requests; more is released.
constexpr std::size_t kIdleBufferKeep = 8 * 1024;
// Bytes asked for by the first read of a request (the rest of a larger header follows).
constexpr std::size_t kFirstReadBytes = 4096;
// Once shutdown_grace is over and every socket is closed, handlers that ignore cancellation get
// this long before the thread's io_context is stopped outright.
constexpr std::chrono::milliseconds kHardStopDelay{1000};

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Appends "Name: value\r\n".
void append_header(std::string& head, std::string_view name, std::string_view value) {
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
}

// The CORS header lines, rendered once.
const std::string& cors_block() {
    static const std::string block = [] {
        std::string out;
        for (const HeaderField& header : cors_headers())
            append_header(out, header.name, header.value);
        return out;
    }();
    return block;
}

// A process-unique request id written into `id` (its capacity is reused): 16 hex digits, a
// random per-process prefix (to tell restarts apart in the logs) followed by a counter.
void next_request_id(std::string& id) {
    static const std::uint32_t prefix = [] {
        try {
            std::random_device device;
            return static_cast<std::uint32_t>(device());
        } catch (const std::exception&) {
            return static_cast<std::uint32_t>(Clock::now().time_since_epoch().count());
        }
    }();
    static std::atomic<std::uint32_t> counter{0};
    std::uint64_t v =
        (std::uint64_t{prefix} << 32) | counter.fetch_add(1, std::memory_order_relaxed);
    static constexpr char kHex[] = "0123456789abcdef";
    id.assign(16, '0');
    for (std::size_t i = id.size(); i-- > 0; v >>= 4) id[i] = kHex[v & 0xf];
}

std::string next_request_id() {
    std::string id;
    next_request_id(id);
    return id;
}

Method to_method(bhttp::verb verb) {
    switch (verb) {
        case bhttp::verb::get:
            return Method::kGet;
        case bhttp::verb::post:
            return Method::kPost;
        case bhttp::verb::put:
            return Method::kPut;
        case bhttp::verb::delete_:
            return Method::kDelete;
        case bhttp::verb::options:
            return Method::kOptions;
        case bhttp::verb::head:
            return Method::kHead;
        case bhttp::verb::patch:
            return Method::kPatch;
        default:
            return Method::kOther;
    }
}

Response server_error(int status, std::string_view errcode, std::string message) {
    return error_response(errors::make(status, errcode, std::move(message)));
}

// The 500 answer to a request whose handling threw: the id lets an operator find the log line.
Response internal_error(const std::string& request_id) {
    Error error = errors::internal();
    error.extra["request_id"] = request_id;
    return error_response(error);
}

// Whether a handler-supplied header may be written as is: a token name, no CR/LF/NUL in the
// value (no response splitting), and none of the framing headers the server owns.
bool is_writable_header(std::string_view name, std::string_view value) {
    if (name.empty()) return false;
    for (char c : name) {
        if (c <= ' ' || c == ':' || c == '\x7f') return false;
    }
    for (char c : value) {
        if (c == '\r' || c == '\n' || c == '\0') return false;
    }
    return !beast::iequals(name, "content-length") && !beast::iequals(name, "transfer-encoding") &&
           !beast::iequals(name, "connection");
}

void append_number(std::string& out, std::size_t value) {
    std::array<char, 24> digits{};
    const auto end = std::to_chars(digits.data(), digits.data() + digits.size(), value).ptr;
    out.append(digits.data(), static_cast<std::size_t>(end - digits.data()));
}

// Writes the response head into `head` (its capacity is reused): status line, Content-Type,
// Content-Length (not for 1xx, 204, 304), the handler's valid extra headers, X-Request-Id, CORS,
// Connection when it differs from the version's default, the empty line. The head is written by
// hand into a buffer the connection reuses: Beast's fields container would allocate once per
// header on every response (the profile showed ~10% of a whoami). The common 200 JSON answer
// starts from one prepared string.
void render_head(std::string& head, unsigned version, const Request& request,
                 const Response& response, bool bodyless_status, bool keep_alive) {
    static const std::string k200Json =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ";
    static const std::string kIdEndCorsEnd = "\r\n" + cors_block() + "\r\n";
    static const std::string kIdEndCors = "\r\n" + cors_block();
    const int status = response.status;
    head.clear();
    if (version != 10 && status == 200 && response.content_type == "application/json") {
        head += k200Json;
    } else {
        head += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
        append_number(head, static_cast<std::size_t>(status));
        head += ' ';
        head += std::string_view(bhttp::obsolete_reason(static_cast<bhttp::status>(status)));
        head += "\r\n";
        if (!response.content_type.empty() && !(bodyless_status && response.body.empty())) {
            append_header(head, "Content-Type", response.content_type);
        }
        if (!bodyless_status) head += "Content-Length: ";
    }
    if (!bodyless_status) {
        append_number(head, response.body.size());
        head += "\r\n";
    }
    for (const auto& [name, value] : response.headers) {
        if (is_writable_header(name, value)) {
            append_header(head, name, value);
        } else {
            log::app()->warn("request {}: dropped invalid response header {:?}", request.request_id,
                             name);
        }
    }
    head += "X-Request-Id: ";
    head += request.request_id;
    if (version == 10 && keep_alive) {
        head += kIdEndCors;
        head += "Connection: keep-alive\r\n\r\n";
    } else if (version != 10 && !keep_alive) {
        head += kIdEndCors;
        head += "Connection: close\r\n\r\n";
    } else {
        head += kIdEndCorsEnd;
    }
}

// Logs an exception that escaped a session coroutine (a bug: the Dispatcher's are caught).
void log_escaped_exception(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        log::app()->error("HTTP session ended by an exception: {}", ex.what());
    } catch (...) {
        log::app()->error("HTTP session ended by an unknown exception");
    }
}

// State shared by every worker of one Server.
struct Shared {
    Shared(ServerOptions o, Dispatcher& d)
        : tls_current(std::exchange(o.tls, nullptr)), options(std::move(o)), dispatcher(d) {}

    // TLS: the context new connections are created from (any thread; SIGHUP replaces it).
    std::shared_ptr<TlsContext> tls_context() {
        std::lock_guard lock(tls_mutex);
        return tls_current;
    }
    void set_tls_context(std::shared_ptr<TlsContext> context) {
        std::lock_guard lock(tls_mutex);
        tls_current.swap(context);
        // The previous context goes with `context`; connections accepted with it hold their own
        // references.
    }

    std::mutex tls_mutex;
    std::shared_ptr<TlsContext> tls_current;  // guarded by tls_mutex; null for plain HTTP
    const ServerOptions options;              // its tls moved to tls_current
    Dispatcher& dispatcher;
    std::atomic<std::size_t> open_connections{0};  // admitted, not yet destroyed
    ConnectionQuota per_address{options.limits.max_connections_per_address};
};

// The connection's stream over an accepted socket: the socket itself, or a TLS stream on the
// current context.
Stream make_stream(tcp::socket socket, [[maybe_unused]] Shared& shared) {
#if MYELIN_HTTP_SERVER_TLS
    return Stream(std::move(socket), shared.tls_context());
#else
    return socket;
#endif
}

class Worker;

// One accepted socket. Admitted connections run serve(): (TLS: the handshake, then) keep-alive
// requests until the client closes, a limit is broken or the server stops. Rejected ones (over
// max_connections) run reject(): one 503, then close (plain HTTP only: see Worker::admit). Lives as
// long as its coroutine or its watchdog needs it (shared_ptr); used only on its worker's thread.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    // `quota_key`: the per-address slot an admitted connection holds (given back when it ends);
    // `address_full`: a rejected connection's address holds its quota (429 rather than 503).
    Connection(Worker& worker, tcp::socket socket, bool admitted, std::string quota_key = {},
               bool address_full = false);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Spawns the session coroutine on the worker's io_context.
    void start();
    // The server began to stop: a connection waiting for its next request (or its TLS
    // handshake), or only draining before close, is closed now; one busy with a request finishes it
    // (answering with Connection: close) and then ends.
    void on_shutdown();
    // The shutdown grace is over: closes the socket and cancels whatever the session awaits,
    // the Dispatcher's handler included (terminal cancellation).
    void force_close();
    // The bytes this connection holds for reading requests: its read buffer's capacity and its
    // parser state, if any (Server::read_buffer_bytes).
    std::size_t reading_memory() const;

private:
    enum class State { kIdle, kReading, kHandling, kWriting, kClosing };

    // One request/response exchange; `request` is filled as far as the request was read.
    struct Exchange {
        Request request;
        Clock::time_point start;
        unsigned version = 11;
        bool keep_alive = false;
        bool head = false;
        // Several X-Forwarded-For header lines joined with ", " (RFC 9110 5.3: the same as one
        // line listing them all); request.forwarded_for views it then.
        std::string forwarded_for_joined;
        // The answer being sent. Kept here rather than in the coroutines' frames: Asio
        // recycles frames of at most ~1 KiB, and every Response slot in serve_one()'s frame
        // made it larger (a malloc and a free per request).
        std::optional<Response> response;
    };

    asio::awaitable<void> serve();
    asio::awaitable<void> reject();
#if MYELIN_HTTP_SERVER_TLS
    // The server side of the TLS handshake within limits.request_timeout; false when it failed
    // (logged at debug level) and the connection is to close.
    asio::awaitable<bool> handshake();
#endif
    // Reads, dispatches and answers one request; true when the connection may serve another.
    asio::awaitable<bool> serve_one();
    enum class SimpleHeadRead { kRead, kBadTarget, kDeclined };
    // Reads a simple request head (parse_simple_request_head) from buffer_ into exchange and
    // consumes it; kDeclined (buffer_ untouched) when the head is not simple or not complete,
    // kBadTarget when parse_target() refused its target. Not a coroutine, so that the head's
    // views never sit in serve_one()'s frame.
    SimpleHeadRead read_simple_head(Exchange& exchange);
    // Reads the request's head and body into exchange with Beast's parser (the head's first
    // bytes in buffer_, more from the socket as needed): nullopt when the request is read,
    // otherwise serve_one()'s result (a refused or failed read, answered when an answer is due).
    asio::awaitable<std::optional<bool>> read_with_beast(Exchange& exchange);
    // Points exchange.request's header views (Authorization, Content-Type, X-Forwarded-For,
    // User-Agent) into `message`, in one pass over its fields.
    template <typename Message>
    static void read_fields(const Message& message, Exchange& exchange);
    // Answers a failed read when an answer is due (408, 431, 413, 400); always returns false.
    asio::awaitable<bool> fail_read(error_code ec, bool got_bytes, Exchange& exchange);
    // Writes exchange.response with Connection: close, drains the input for a while, returns
    // false.
    asio::awaitable<bool> answer_and_close(Exchange& exchange);
    // answer_and_close() with a Matrix error answer.
    asio::awaitable<bool> refuse_and_close(int status, const char* errcode, const char* message,
                                           Exchange& exchange);
    // Writes exchange.response (which must hold one) with the server's headers within
    // `timeout`; true when the connection stays open (written, and both sides want keep-alive).
    asio::awaitable<bool> send(Exchange& exchange, Clock::duration timeout, bool log_access);
    // Half-closes and discards input until EOF, kLingerMaxBytes or `timeout`.
    asio::awaitable<void> linger(Clock::duration timeout);

    // Sets the deadline of the current phase; the watchdog cancels the socket's operation when
    // it passes (except while the Dispatcher handles the request) and sets timed_out_.
    void set_deadline(Clock::duration timeout);
    void arm_watchdog();
    void on_watchdog();
    // The route's body limit; nullopt when the Dispatcher threw (logged).
    std::optional<std::size_t> route_body_limit(const Request& request);
    void log_exception(const Request& request, const char* what) const;
    void access_log(const Exchange& exchange, int status, std::size_t body_bytes,
                    std::string_view user) const;
    // Ends the connection: stops the watchdog and closes the socket. Idempotent.
    void finish();

    // Before the Dispatcher's handle(), which may wait for minutes (a /sync long-poll): frees
    // the read buffer's spare capacity, keeping the bytes already read (pipelined requests)
    // in a block of their size, and the parser state (the Request holds copies of all it
    // needs). The next read allocates again.
    void release_reading_memory();
    // The TCP socket under the stream (the stream itself for plain HTTP).
    tcp::socket& socket() {
#if MYELIN_HTTP_SERVER_TLS
        return stream_.next_layer();
#else
        return stream_;
#endif
    }

    Worker& worker_;
    Shared& shared_;
    Stream stream_;
    asio::steady_timer timer_;   // the watchdog
    beast::flat_buffer buffer_;  // persists across requests (pipelined bytes stay in it)
    std::string head_;           // the response head being written; reused across requests
    Exchange exchange_;          // the request being served; reused across requests
    using RequestParser =
        bhttp::request_parser<bhttp::string_body, std::pmr::polymorphic_allocator<char>>;
    // What Beast's parser needs, allocated only for requests the fast reader declines: most
    // connections never need it, and it is ~2.5 KiB.
    struct ParserState {
        // Backing store of the parser's header fields; larger headers spill to the heap.
        std::array<std::byte, 2048> fields_buffer;
        std::pmr::monotonic_buffer_resource fields_arena{fields_buffer.data(),
                                                         fields_buffer.size()};
        // The current request's parser (its fields live in fields_arena, so it is declared
        // after it: destroyed first).
        std::optional<RequestParser> parser;
    };
    std::unique_ptr<ParserState> parser_state_;  // null until a request needs Beast's parser
    std::string remote_ip_;
    // Bound to the session's co_spawn; shared with its completion handler, which must keep the
    // signal alive while the coroutine can still be cancelled.
    std::shared_ptr<asio::cancellation_signal> cancel_;
    Clock::time_point deadline_ = Clock::time_point::max();
    State state_ = State::kIdle;
    const bool admitted_;
    const std::string quota_key_;
    const bool address_full_;
    bool timed_out_ = false;
    bool closed_ = false;
    bool forced_ = false;
};

// One network thread's share of the server: an io_context, its acceptor bound with SO_REUSEPORT
// to the common address, and the connections it accepted. Everything but the constructor,
// listen() and run() runs on the worker's own thread.
class Worker {
public:
    explicit Worker(Shared& shared) : shared_(shared) {}
    ~Worker() { destroying_ = true; }  // handlers destroyed with ioc_ must not touch the timer
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Opens, binds (SO_REUSEADDR + SO_REUSEPORT) and listens; an Error naming the failed step.
    Result<void> listen(const tcp::endpoint& endpoint);
    std::uint16_t local_port() const;
    // Spawns the accept loop; call before run().
    void start_accepting();
    // The thread body: runs the io_context until it runs out of work (after shutdown).
    void run();
    // Stops accepting and starts the shutdown of this worker's connections (see Server::stop).
    void begin_shutdown();

    bool stopping() const { return stopping_; }
    Shared& shared() { return shared_; }
    asio::io_context& context() { return ioc_; }
    void add(Connection* connection, bool admitted);
    void remove(Connection* connection, bool admitted);
    // The sum of the connections' reading_memory() (on the worker's thread).
    std::size_t reading_memory() const;

private:
    asio::awaitable<void> accept_loop();
    // Counts the connection against max_connections and starts it (or its 503).
    void admit(tcp::socket socket);
    // Log at most once a second (with a count): a flood must not become a log flood.
    void note_accept_error(const error_code& ec);
    void note_rejected(bool address_full);
    void on_grace_expired();
    std::vector<std::shared_ptr<Connection>> snapshot();

    Shared& shared_;
    std::unordered_set<Connection*> connections_;
    std::size_t rejecting_ = 0;
    std::size_t rejected_unlogged_ = 0;          // server full: 503
    std::size_t rejected_address_unlogged_ = 0;  // address full: 429
    Clock::time_point next_reject_log_{};
    std::size_t accept_errors_unlogged_ = 0;
    Clock::time_point next_accept_log_{};
    bool stopping_ = false;
    bool destroying_ = false;
    // Declared after connections_ so that connections destroyed with the io_context's pending
    // handlers can still unregister; the I/O objects below are destroyed before ioc_.
    // One thread runs it, and every socket and timer of the worker is used only on that thread
    // (other threads post to it): Asio may skip the per-descriptor locks (one lock and unlock
    // per I/O operation started or completed). Posting stays thread-safe.
    asio::io_context ioc_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    tcp::acceptor acceptor_{ioc_};
    asio::steady_timer shutdown_timer_{ioc_};
};

// ---- Connection ----------------------------------------------------------------------------

Connection::Connection(Worker& worker, tcp::socket socket, bool admitted, std::string quota_key,
                       bool address_full)
    : worker_(worker),
      shared_(worker.shared()),
      stream_(make_stream(std::move(socket), worker.shared())),
      timer_(stream_.get_executor()),
      cancel_(std::make_shared<asio::cancellation_signal>()),
      admitted_(admitted),
      quota_key_(std::move(quota_key)),
      address_full_(address_full) {
    error_code ec;
    auto peer = this->socket().remote_endpoint(ec);  // the parameter `socket` is moved from
    remote_ip_ = ec ? std::string("-") : peer.address().to_string();
    worker_.add(this, admitted_);
}

Connection::~Connection() {
    if (admitted_) shared_.per_address.release(quota_key_);
    worker_.remove(this, admitted_);
}

void Connection::start() {
    // The completion handler owns the connection and the cancellation signal until the
    // coroutine is done.
    auto done = [self = shared_from_this(), cancel = cancel_](const std::exception_ptr& e) {
        if (e) log_escaped_exception(e);
        self->finish();
    };
    asio::co_spawn(stream_.get_executor(), admitted_ ? serve() : reject(),
                   asio::bind_cancellation_slot(cancel_->slot(), std::move(done)));
}

void Connection::on_shutdown() {
    if (state_ == State::kIdle || state_ == State::kClosing || !admitted_) {
        error_code ec;
        socket().close(ec);
    }
}

void Connection::force_close() {
    forced_ = true;
    error_code ec;
    socket().close(ec);
    cancel_->emit(asio::cancellation_type::terminal);
}

void Connection::finish() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    error_code ec;
    socket().close(ec);
}

std::size_t Connection::reading_memory() const {
    return buffer_.capacity() + (parser_state_ ? sizeof(ParserState) : 0);
}

void Connection::release_reading_memory() {
    buffer_.shrink_to_fit();  // keeps exactly the unread bytes (none: frees the buffer)
    parser_state_.reset();
}

void Connection::set_deadline(Clock::duration timeout) {
    timed_out_ = false;
    deadline_ = Clock::now() + timeout;
    // A later deadline needs no timer operation: the watchdog wakes at the old expiry and
    // re-arms. An earlier one cancels the pending wait; the watchdog then re-arms at once.
    if (deadline_ < timer_.expiry()) timer_.expires_at(deadline_);
}

void Connection::arm_watchdog() {
    timer_.expires_at(deadline_);
    timer_.async_wait([self = shared_from_this()](error_code) { self->on_watchdog(); });
}

void Connection::on_watchdog() {
    if (closed_) return;
    if (deadline_ <= Clock::now()) {
        // While the Dispatcher works the connection has no deadline (a /sync may wait long);
        // the phase's deadline simply lapses.
        if (state_ != State::kHandling) {
            timed_out_ = true;
            error_code ec;
            socket().cancel(ec);
        }
        deadline_ = Clock::time_point::max();
    }
    arm_watchdog();
}

asio::awaitable<void> Connection::serve() {
    co_await asio::this_coro::throw_if_cancelled(false);
    arm_watchdog();
    const ServerLimits& limits = shared_.options.limits;
#if MYELIN_HTTP_SERVER_TLS
    const bool secured = co_await handshake();
    if (!secured) {
        finish();
        co_return;
    }
#endif
    // A new connection gets request_timeout to begin its first request, not the keep-alive
    // idle_timeout: connecting and sending nothing must not hold a slot longer than a slow
    // request can.
    auto wait_for_request = std::min(limits.idle_timeout, limits.request_timeout);
    while (!worker_.stopping()) {
        if (buffer_.size() == 0) {
            // Read the next request's first bytes: an idle keep-alive connection holds no
            // parser, and its timeout ends it without an answer. (A read rather than
            // async_wait(wait_read): the wait re-registers the socket with epoll every time,
            // one extra system call per request.)
            state_ = State::kIdle;
            if (buffer_.capacity() > kIdleBufferKeep) buffer_.shrink_to_fit();
            set_deadline(wait_for_request);
            auto [ec, n] =
                co_await stream_.async_read_some(buffer_.prepare(kFirstReadBytes), kUseTuple);
            if (!ec) buffer_.commit(n);
            if (ec || n == 0 || timed_out_ || worker_.stopping()) break;
        }
        if (!co_await serve_one()) break;
        wait_for_request = limits.idle_timeout;
    }
    finish();
}

#if MYELIN_HTTP_SERVER_TLS
asio::awaitable<bool> Connection::handshake() {
    // Idle until the handshake is done: a stopping server closes the connection at once, and
    // the deadline ends a client that is too slow (or sends no TLS at all, just waits).
    state_ = State::kIdle;
    set_deadline(shared_.options.limits.request_timeout);
    auto [ec] = co_await stream_.async_handshake(asio::ssl::stream_base::server, kUseTuple);
    if (!ec && !timed_out_ && !worker_.stopping()) co_return true;
    // Debug only: scanners and plain-HTTP clients on the TLS port would flood the log.
    if (timed_out_) {
        log::app()->debug("TLS handshake with {} timed out", remote_ip_);
    } else if (ec) {
        log::app()->debug("TLS handshake with {} failed: {}", remote_ip_, ec.message());
    }
    co_return false;
}
#endif

asio::awaitable<void> Connection::reject() {
    co_await asio::this_coro::throw_if_cancelled(false);
    arm_watchdog();
    const auto start = Clock::now();
    Exchange exchange;
    exchange.start = start;
    exchange.request.request_id = next_request_id();
    // The request is not read: answering at once keeps the cost of a flood to one small write.
    if (address_full_) {
        Error error = errors::limit_exceeded(5000);
        error.message = "Too many connections from this address";
        exchange.response = error_response(error);
    } else {
        exchange.response = error_response(errors::unavailable("Too many connections", 5));
    }
    co_await send(exchange, kRejectTimeout, false);
    const auto left = kRejectTimeout - (Clock::now() - start);
    if (left > Clock::duration::zero()) co_await linger(left);
    finish();
}

asio::awaitable<bool> Connection::serve_one() {
    const ServerLimits& limits = shared_.options.limits;
    // The exchange lives as long as the connection so that its strings keep their capacity:
    // after the first request, reading one allocates little.
    Exchange& exchange = exchange_;
    exchange.request.clear();
    exchange.version = 11;
    exchange.keep_alive = false;
    exchange.head = false;
    exchange.start = Clock::now();
    Request& request = exchange.request;
    next_request_id(request.request_id);
    request.remote_ip = remote_ip_;
    state_ = State::kReading;
    set_deadline(limits.request_timeout);  // for the whole request, header and body

    // Most requests are a complete, simple head already in buffer_: read without Beast (see
    // simple_request_head.hpp). Anything else goes through Beast's parser, as before.
    const SimpleHeadRead simple = read_simple_head(exchange);
    if (simple == SimpleHeadRead::kBadTarget) {
        co_return co_await refuse_and_close(400, "M_UNRECOGNIZED", "Invalid request target",
                                            exchange);
    }
    if (simple == SimpleHeadRead::kDeclined) {
        // In a coroutine of its own: its locals are not in this frame, which a request waiting in
        // handle() (a /sync long-poll) keeps.
        auto reading = read_with_beast(exchange);
        const std::optional<bool> ended = co_await std::move(reading);
        if (ended) co_return *ended;
    }

    state_ = State::kHandling;
    std::optional<Response>& response = exchange.response;
    response.reset();  // the previous request's answer must never stand in for this one's
    try {
        response = shared_.dispatcher.handle_now(request);
        if (!response) {
            release_reading_memory();
            auto handle_op = shared_.dispatcher.handle(request);
            response = co_await std::move(handle_op);
        }
    } catch (const std::exception& e) {
        log_exception(request, e.what());
    } catch (...) {
        log_exception(request, "unknown exception");
    }
    if (!response) response = internal_error(request.request_id);
    co_return co_await send(exchange, limits.write_timeout, true);
}

asio::awaitable<std::optional<bool>> Connection::read_with_beast(Exchange& exchange) {
    const ServerLimits& limits = shared_.options.limits;
    Request& request = exchange.request;
    // The parser's header fields come from a per-connection arena, released per request: Beast
    // would otherwise allocate (and free) once per header line.
    // The parser lives in the connection, not in this coroutine's frame: Asio recycles frames
    // of at most ~1 KiB per thread, and one holding a parser is larger, so it would cost a
    // malloc and a free per request.
    if (!parser_state_) parser_state_ = std::make_unique<ParserState>();
    ParserState& state = *parser_state_;
    state.parser.reset();  // before its arena is released
    state.fields_arena.release();
    RequestParser& parser = state.parser.emplace(
        std::piecewise_construct, std::make_tuple(),
        std::make_tuple(std::pmr::polymorphic_allocator<char>(&state.fields_arena)));
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(limits.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    // No body limit while the header is read: the route's limit is known only once the path is,
    // and Beast would otherwise check Content-Length against its 1 MiB default.
    parser.body_limit(boost::none);
    {
        // The header is parsed from buffer_ by hand rather than through async_read_header:
        // serve() has usually read the whole request already, and Beast's composed read would
        // then complete "immediately", which costs a post through the scheduler and two
        // composed-operation layers per request. The socket is read only when bytes are
        // missing.
        std::size_t header_bytes = 0;  // consumed so far, across reads
        error_code ec;
        while (!parser.is_header_done()) {
            if (buffer_.size() > 0) {
                const std::size_t used = parser.put(buffer_.data(), ec);
                buffer_.consume(used);
                header_bytes += used;
                if (ec == bhttp::error::need_more || (!ec && used == 0)) {
                    ec = {};  // the header is incomplete: read more below
                } else if (ec) {
                    break;
                } else {
                    continue;  // header done, or more of it parsed: look again
                }
            }
            auto [read_ec, n] =
                co_await stream_.async_read_some(buffer_.prepare(kFirstReadBytes), kUseTuple);
            if (read_ec == asio::error::eof) {
                parser.put_eof(ec);  // end_of_stream before any byte, else partial_message
                if (!ec) ec = bhttp::error::partial_message;
                break;
            }
            if (read_ec || timed_out_) {
                ec = read_ec;
                break;
            }
            buffer_.commit(n);
        }
        if (ec || timed_out_) {
            co_return std::optional<bool>(
                co_await fail_read(ec, parser.got_some() || buffer_.size() > 0, exchange));
        }
        // Beast applies header_limit to each buffer it is handed, so whether it fires depends
        // on how the bytes arrived; the whole header's size does not.
        if (header_bytes > limits.max_header_bytes) {
            co_return std::optional<bool>(
                co_await fail_read(bhttp::error::header_limit, true, exchange));
        }
    }

    auto& message = parser.get();
    exchange.version = message.version();
    exchange.keep_alive = parser.keep_alive();
    exchange.head = message.method() == bhttp::verb::head;
    request.method = to_method(message.method());
    request.method_text = std::string_view(message.method_string());
    request.target = std::string_view(message.target());
    if (!parse_target(request)) {
        co_return std::optional<bool>(
            co_await refuse_and_close(400, "M_UNRECOGNIZED", "Invalid request target", exchange));
    }
    read_fields(message, exchange);

    if (!parser.is_done()) {
        // A body follows: its limit is the route's (asked only now: bodiless requests, most of
        // them, skip the extra route lookup).
        const std::optional<std::size_t> body_limit = route_body_limit(request);
        if (!body_limit) {
            exchange.response = internal_error(request.request_id);
            co_return std::optional<bool>(co_await answer_and_close(exchange));
        }
        if (auto length = parser.content_length(); length && *length > *body_limit) {
            // Refused before a byte of the body is read (and before any 100 Continue).
            co_return std::optional<bool>(
                co_await refuse_and_close(413, "M_TOO_LARGE", "Request body too large", exchange));
        }
        parser.body_limit(static_cast<std::uint64_t>(*body_limit));  // per chunk if chunked
        if (exchange.version == 11 &&
            beast::iequals(message[bhttp::field::expect], "100-continue")) {
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            auto [ec, n] = co_await asio::async_write(
                stream_, asio::buffer(kContinue.data(), kContinue.size()), kUseTuple);
            if (ec || timed_out_)
                co_return std::optional<bool>(co_await fail_read(ec, true, exchange));
        }
        auto [ec, n] = co_await bhttp::async_read(stream_, buffer_, parser, kUseTuple);
        if (ec || timed_out_) co_return std::optional<bool>(co_await fail_read(ec, true, exchange));
    }
    request.body = std::move(message.body());
    co_return std::nullopt;
}

Connection::SimpleHeadRead Connection::read_simple_head(Exchange& exchange) {
    SimpleRequestHead simple_head;
    if (!parse_simple_request_head(
            std::string_view(static_cast<const char*>(buffer_.data().data()), buffer_.size()),
            shared_.options.limits.max_header_bytes, simple_head)) {
        return SimpleHeadRead::kDeclined;
    }
    const SimpleRequestHead* simple = &simple_head;
    Request& request = exchange.request;
    exchange.keep_alive = simple->keep_alive;
    exchange.head = simple->method == Method::kHead;
    request.method = simple->method;
    request.method_text = simple->method_text;
    request.target = simple->target;
    request.authorization = simple->authorization;
    request.content_type = simple->content_type;
    request.forwarded_for = simple->forwarded_for;
    request.user_agent = simple->user_agent;
    // The views point into buffer_: everything is copied above, before they are consumed.
    buffer_.consume(simple->header_bytes);
    // A parser left from an earlier request that Beast read is not needed any more: release it
    // and its fields (which may have spilled to the heap), as the next Beast read would.
    if (parser_state_ && parser_state_->parser) {
        parser_state_->parser.reset();
        parser_state_->fields_arena.release();
    }
    if (!parse_target(request)) return SimpleHeadRead::kBadTarget;
    return SimpleHeadRead::kRead;
}

template <typename Message>
void Connection::read_fields(const Message& message, Exchange& exchange) {
    Request& request = exchange.request;
    request.authorization = {};
    request.content_type = {};
    request.forwarded_for = {};
    request.user_agent = {};
    // The first line of each counts, as message[name] would give it; X-Forwarded-For joins all.
    bool authorization = false;
    bool content_type = false;
    bool user_agent = false;
    bool forwarded = false;
    bool forwarded_joined = false;
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
                // Every line counts (RFC 9110 5.3): a proxy may add its own line rather than
                // append to the client's, and reading only the first would believe the client.
                if (!std::exchange(forwarded, true)) {
                    request.forwarded_for = field.value();
                    break;
                }
                if (!forwarded_joined) {
                    exchange.forwarded_for_joined.assign(request.forwarded_for);
                    forwarded_joined = true;
                }
                exchange.forwarded_for_joined += ", ";
                exchange.forwarded_for_joined.append(field.value().data(), field.value().size());
                request.forwarded_for = exchange.forwarded_for_joined;
                break;
            default:
                break;
        }
    }
}

asio::awaitable<bool> Connection::fail_read(error_code ec, bool got_bytes, Exchange& exchange) {
    if (timed_out_) {
        // The client began a request but did not finish it in time. (Without a byte received
        // there is nobody to answer.)
        if (!got_bytes) co_return false;
        co_return co_await refuse_and_close(408, "M_UNKNOWN", "Request timed out", exchange);
    }
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
        co_return co_await refuse_and_close(431, "M_TOO_LARGE", "Request headers too large",
                                            exchange);
    }
    if (ec == bhttp::error::body_limit) {
        co_return co_await refuse_and_close(413, "M_TOO_LARGE", "Request body too large", exchange);
    }
    // EOF between requests or in the middle of one: the client went away.
    if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) co_return false;
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
        co_return co_await refuse_and_close(400, "M_UNKNOWN", "Bad request", exchange);
    }
    co_return false;  // reset, aborted by shutdown...: nothing can be answered
}

asio::awaitable<bool> Connection::answer_and_close(Exchange& exchange) {
    exchange.keep_alive = false;
    co_await send(exchange, shared_.options.limits.write_timeout, true);
    co_await linger(kLingerTimeout);
    co_return false;
}

asio::awaitable<bool> Connection::refuse_and_close(int status, const char* errcode,
                                                   const char* message, Exchange& exchange) {
    exchange.response = server_error(status, errcode, message);
    co_return co_await answer_and_close(exchange);
}

asio::awaitable<bool> Connection::send(Exchange& exchange, Clock::duration timeout,
                                       bool log_access) {
    Response& response = *exchange.response;
    state_ = State::kWriting;
    set_deadline(timeout);
    if (response.status < 100 || response.status > 999) {
        log::app()->error("request {}: handler returned invalid HTTP status {}",
                          exchange.request.request_id, response.status);
        response = internal_error(exchange.request.request_id);
    }
    const int status = response.status;
    // 1xx, 204 and 304 have no body and no Content-Length (RFC 9110 8.6).
    const bool bodyless_status = status < 200 || status == 204 || status == 304;
    if (bodyless_status) response.body.clear();
    const bool keep_alive = exchange.keep_alive && !worker_.stopping();

    render_head(head_, exchange.version, exchange.request, response, bodyless_status, keep_alive);
    // HEAD: the headers of the GET answer, Content-Length included, without its body.
    const std::size_t body_bytes = exchange.head ? 0 : response.body.size();
    std::array<asio::const_buffer, 2> buffers{asio::buffer(head_),
                                              asio::buffer(response.body.data(), body_bytes)};
    // write_some until everything is written (what async_write does, without its composed
    // operation layer per request; an answer nearly always goes in one write).
    error_code ec;
    for (std::size_t left = head_.size() + body_bytes; left > 0;) {
        auto [write_ec, n] = co_await stream_.async_write_some(buffers, kUseTuple);
        if (write_ec || n == 0) {
            ec = write_ec ? write_ec : make_error_code(asio::error::broken_pipe);
            break;
        }
        left -= n;
        const std::size_t from_head = std::min(n, buffers[0].size());
        buffers[0] += from_head;
        buffers[1] += n - from_head;
    }
    if (log_access) access_log(exchange, status, body_bytes, response.log_user);
    // Written: an idle keep-alive connection does not keep its last answer.
    exchange.response.reset();
    co_return !ec && !timed_out_ && keep_alive;
}

asio::awaitable<void> Connection::linger(Clock::duration timeout) {
    state_ = State::kClosing;
    if (worker_.stopping() || !socket().is_open()) co_return;
    // TLS too: the answer is written; the TCP half-close and the drain below do not need the
    // TLS layer (no close_notify is sent: the answer's Content-Length frames it).
    error_code ec;
    socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) co_return;
    set_deadline(timeout);
    buffer_.clear();
    for (std::size_t drained = 0; drained < kLingerMaxBytes;) {
        auto [read_ec, n] =
            co_await socket().async_read_some(buffer_.prepare(kLingerChunk), kUseTuple);
        if (read_ec || timed_out_) break;
        drained += n;  // never committed: dropped
    }
}

std::optional<std::size_t> Connection::route_body_limit(const Request& request) {
    try {
        return shared_.dispatcher.body_limit(request.method, request.path)
            .value_or(shared_.options.limits.default_body_bytes);
    } catch (const std::exception& e) {
        log_exception(request, e.what());
    } catch (...) {
        log_exception(request, "unknown exception");
    }
    return std::nullopt;
}

void Connection::log_exception(const Request& request, const char* what) const {
    // After the grace period the handler was cancelled on purpose: not an error.
    if (forced_) return;
    log::app()->error("request {} ({} {}) failed with an exception: {}", request.request_id,
                      request.method_text, log::redact_target(request.target), what);
}

void Connection::access_log(const Exchange& exchange, int status, std::size_t body_bytes,
                            std::string_view user) const {
    if (!shared_.options.access_log) return;
    const Request& request = exchange.request;
    const auto latency_us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - exchange.start)
            .count();
    // The target may carry access_token in its query: only the redacted form is logged, and
    // neither headers nor bodies ever are.
    const std::string target = request.target.empty() ? "-" : log::redact_target(request.target);
    const std::string_view method =
        request.method_text.empty() ? std::string_view("-") : request.method_text;
    if (user.empty()) {
        log::access()->info("{} {} {} {}B {}us id={} ip={}", method, target, status, body_bytes,
                            latency_us, request.request_id, remote_ip_);
    } else {
        log::access()->info("{} {} {} {}B {}us id={} ip={} user={}", method, target, status,
                            body_bytes, latency_us, request.request_id, remote_ip_, user);
    }
}

// ---- Worker --------------------------------------------------------------------------------

Result<void> Worker::listen(const tcp::endpoint& endpoint) {
    error_code ec;
    const char* step = "open";
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) {
        step = "setsockopt";
        acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    }
    if (!ec) acceptor_.set_option(ReusePort(true), ec);
    if (!ec) {
        step = "bind";
        acceptor_.bind(endpoint, ec);
    }
    if (!ec) {
        step = "listen";
        acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (!ec) return {};
    error_code ignored;
    acceptor_.close(ignored);
    return errors::internal("cannot listen on " + endpoint.address().to_string() + ":" +
                            std::to_string(endpoint.port()) + ": " + step + ": " + ec.message());
}

std::uint16_t Worker::local_port() const {
    error_code ec;
    auto endpoint = acceptor_.local_endpoint(ec);
    return ec ? 0 : endpoint.port();
}

void Worker::start_accepting() {
    asio::co_spawn(ioc_, accept_loop(), [](const std::exception_ptr& e) {
        if (e) log::app()->error("HTTP accept loop ended by an exception");
    });
}

void Worker::run() {
    for (;;) {
        try {
            ioc_.run();
            return;
        } catch (const std::exception& e) {
            log::app()->error("HTTP network thread: unexpected exception: {}", e.what());
        } catch (...) {
            log::app()->error("HTTP network thread: unexpected unknown exception");
        }
    }
}

asio::awaitable<void> Worker::accept_loop() {
    asio::steady_timer backoff(ioc_);
    while (!stopping_) {
        auto [ec, socket] = co_await acceptor_.async_accept(kUseTuple);
        if (stopping_) break;
        bool failed = static_cast<bool>(ec);
        if (failed) {
            note_accept_error(ec);
        } else {
            try {
                admit(std::move(socket));
            } catch (const std::exception& e) {
                log::app()->error("HTTP accept: cannot start a connection: {}", e.what());
                failed = true;
            }
        }
        if (failed) {
            backoff.expires_after(kAcceptBackoff);
            co_await backoff.async_wait(kUseTuple);
        }
    }
}

void Worker::admit(tcp::socket socket) {
    error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    const ServerLimits& limits = shared_.options.limits;
    // The per-address slot first: a flood from one address is refused without touching the
    // global count.
    std::string quota_key;
    bool address_full = false;
    if (limits.max_connections_per_address > 0) {
        auto peer = socket.remote_endpoint(ec);
        if (!ec) {
            quota_key = peer.address().to_string();
            if (limits.address_key) quota_key = limits.address_key(quota_key);
        }
        address_full = !shared_.per_address.try_acquire(quota_key);
    }
    auto& open = shared_.open_connections;
    const bool admitted =
        !address_full && open.fetch_add(1, std::memory_order_relaxed) < limits.max_connections;
    if (!admitted) {
        if (!address_full) {
            open.fetch_sub(1, std::memory_order_relaxed);
            shared_.per_address.release(quota_key);
        }
        note_rejected(address_full);
        if (rejecting_ >= kMaxRejecting) return;  // flood: the socket closes unanswered
        // TLS: the 503 would need a handshake first, the dearest part of a connection, at the
        // moment the server is overloaded; the socket is closed unanswered instead.
        if (kTls) return;
    }
    std::shared_ptr<Connection> connection;
    try {
        // quota_key is copied: a throwing constructor leaves it here to give back.
        connection = std::make_shared<Connection>(*this, std::move(socket), admitted, quota_key,
                                                  address_full);
    } catch (...) {
        if (admitted) {
            open.fetch_sub(1, std::memory_order_relaxed);
            shared_.per_address.release(quota_key);
        }
        throw;
    }
    connection->start();
}

void Worker::note_accept_error(const error_code& ec) {
    ++accept_errors_unlogged_;
    const auto now = Clock::now();
    if (now < next_accept_log_) return;
    log::app()->error(
        "HTTP accept failed: {} ({} time(s) since the last report); backing off {} ms",
        ec.message(), accept_errors_unlogged_, kAcceptBackoff.count());
    accept_errors_unlogged_ = 0;
    next_accept_log_ = now + std::chrono::seconds(1);
}

void Worker::note_rejected(bool address_full) {
    ++(address_full ? rejected_address_unlogged_ : rejected_unlogged_);
    const auto now = Clock::now();
    if (now < next_reject_log_) return;
    if (rejected_unlogged_ > 0) {
        log::app()->warn("HTTP: {} connection(s) refused with 503: {} connections open (limit {})",
                         rejected_unlogged_,
                         shared_.open_connections.load(std::memory_order_relaxed),
                         shared_.options.limits.max_connections);
    }
    if (rejected_address_unlogged_ > 0) {
        log::app()->warn(
            "HTTP: {} connection(s) refused with 429: their address holds {} connections (the "
            "limit per address)",
            rejected_address_unlogged_, shared_.options.limits.max_connections_per_address);
    }
    rejected_unlogged_ = 0;
    rejected_address_unlogged_ = 0;
    next_reject_log_ = now + std::chrono::seconds(1);
}

void Worker::add(Connection* connection, bool admitted) {
    connections_.insert(connection);
    if (!admitted) ++rejecting_;
}

void Worker::remove(Connection* connection, bool admitted) {
    connections_.erase(connection);
    if (admitted) {
        shared_.open_connections.fetch_sub(1, std::memory_order_relaxed);
    } else {
        --rejecting_;
    }
    // The last connection gone: nothing left to wait for, let the io_context run out.
    if (stopping_ && connections_.empty() && !destroying_) shutdown_timer_.cancel();
}

std::size_t Worker::reading_memory() const {
    std::size_t total = 0;
    for (const Connection* c : connections_) total += c->reading_memory();
    return total;
}

std::vector<std::shared_ptr<Connection>> Worker::snapshot() {
    // Closing sockets never runs handlers inline, but copying first keeps the iteration safe
    // against any unregistering while it runs.
    std::vector<std::shared_ptr<Connection>> out;
    out.reserve(connections_.size());
    for (Connection* c : connections_) out.push_back(c->shared_from_this());
    return out;
}

void Worker::begin_shutdown() {
    if (stopping_) return;
    stopping_ = true;
    error_code ec;
    acceptor_.close(ec);
    for (auto& connection : snapshot()) connection->on_shutdown();
    if (connections_.empty()) return;
    shutdown_timer_.expires_after(shared_.options.limits.shutdown_grace);
    shutdown_timer_.async_wait([this](error_code wait_ec) {
        if (!wait_ec) on_grace_expired();
    });
}

void Worker::on_grace_expired() {
    for (auto& connection : snapshot()) connection->force_close();
    if (connections_.empty()) return;
    shutdown_timer_.expires_after(kHardStopDelay);
    shutdown_timer_.async_wait([this](error_code ec) {
        if (ec) return;
        log::app()->warn(
            "HTTP: {} request(s) still running {} ms after the shutdown grace; "
            "stopping the network thread",
            connections_.size(), kHardStopDelay.count());
        ioc_.stop();
    });
}

// ---- Core ----------------------------------------------------------------------------------

// This build's server behind Server (see server_core.hpp).
struct Core final : detail::ServerCore {
    Core(ServerOptions options, Dispatcher& dispatcher) : shared(std::move(options), dispatcher) {}

    Result<void> start() override;
    void stop() override;
    void wait() override;
    std::uint16_t port_number() const override { return port.load(); }
    std::size_t open_connections() const override {
        return shared.open_connections.load(std::memory_order_relaxed);
    }
    Result<void> set_tls_context(std::shared_ptr<TlsContext> context) override;
    std::size_t read_buffer_bytes() override;

    Shared shared;
    std::atomic<std::uint16_t> port{0};
    std::mutex mutex;
    // guarded by mutex:
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<std::thread> threads;
    bool started = false;
    bool stop_requested = false;
};

Result<void> Core::start() {
    std::lock_guard lock(mutex);
    if (started || stop_requested)
        return errors::internal("HTTP server already started or stopped");
    error_code ec;
    const auto address = asio::ip::make_address(shared.options.address, ec);
    if (ec) return errors::internal("invalid listen address '" + shared.options.address + "'");
    unsigned count = shared.options.threads;
    if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());

    // Bind everything before starting anything. With port 0 the first acceptor picks the port
    // and the others join it through SO_REUSEPORT.
    std::vector<std::unique_ptr<Worker>> bound;
    std::uint16_t chosen = shared.options.port;
    for (unsigned i = 0; i < count; ++i) {
        auto worker = std::make_unique<Worker>(shared);
        if (auto r = worker->listen(tcp::endpoint(address, chosen)); !r) return r.error();
        if (i == 0) chosen = worker->local_port();
        bound.push_back(std::move(worker));
    }
    port = chosen;
    workers = std::move(bound);
    for (auto& worker : workers) worker->start_accepting();
    try {
        for (auto& worker : workers) threads.emplace_back([w = worker.get()] { w->run(); });
    } catch (const std::system_error& e) {
        // Unwind the threads already running; nothing stays started.
        stop_requested = true;
        for (std::size_t i = 0; i < threads.size(); ++i) {
            asio::post(workers[i]->context(), [w = workers[i].get()] { w->begin_shutdown(); });
        }
        for (auto& thread : threads) thread.join();
        threads.clear();
        return errors::internal(std::string("cannot start the HTTP threads: ") + e.what());
    }
    started = true;
    return {};
}

void Core::stop() {
    std::lock_guard lock(mutex);
    if (stop_requested) return;
    stop_requested = true;
    for (auto& worker : workers) {
        asio::post(worker->context(), [w = worker.get()] { w->begin_shutdown(); });
    }
}

void Core::wait() {
    std::vector<std::thread> joining;
    {
        std::lock_guard lock(mutex);
        joining.swap(threads);
    }
    for (auto& thread : joining) thread.join();
}

std::size_t Core::read_buffer_bytes() {
    std::vector<Worker*> running;
    {
        std::lock_guard lock(mutex);
        if (!started || stop_requested) return 0;
        for (auto& worker : workers) running.push_back(worker.get());
    }
    std::size_t total = 0;
    for (Worker* worker : running) {
        // Shared: a worker that stops before running the count destroys it, and never the
        // answer's storage under it.
        auto answer = std::make_shared<std::promise<std::size_t>>();
        auto counted = answer->get_future();
        asio::post(worker->context(),
                   [worker, answer] { answer->set_value(worker->reading_memory()); });
        if (counted.wait_for(std::chrono::seconds(5)) != std::future_status::ready) continue;
        try {
            total += counted.get();
        } catch (const std::future_error&) {
            // The worker stopped first: its connections are gone.
        }
    }
    return total;
}

Result<void> Core::set_tls_context(std::shared_ptr<TlsContext> context) {
    if (!kTls) return errors::internal("this HTTP listener was started without TLS");
    if (!context) return errors::internal("no TLS context given");
    shared.set_tls_context(std::move(context));
    return {};
}

}  // namespace

#if MYELIN_HTTP_SERVER_TLS
std::unique_ptr<detail::ServerCore> detail::make_tls_server(ServerOptions options,
                                                            Dispatcher& dispatcher) {
    return std::make_unique<Core>(std::move(options), dispatcher);
}
#else
std::unique_ptr<detail::ServerCore> detail::make_plain_server(ServerOptions options,
                                                              Dispatcher& dispatcher) {
    return std::make_unique<Core>(std::move(options), dispatcher);
}

// ---- Server --------------------------------------------------------------------------------

Server::Server(ServerOptions options, Dispatcher& dispatcher)
    : impl_(options.tls ? detail::make_tls_server(std::move(options), dispatcher)
                        : detail::make_plain_server(std::move(options), dispatcher)) {}

Server::~Server() {
    stop();
    wait();
}

Result<void> Server::start() { return impl_->start(); }

std::uint16_t Server::port() const { return impl_->port_number(); }

void Server::stop() { impl_->stop(); }

void Server::wait() { impl_->wait(); }

std::size_t Server::open_connections() const { return impl_->open_connections(); }

std::size_t Server::read_buffer_bytes() { return impl_->read_buffer_bytes(); }

Result<void> Server::set_tls_context(std::shared_ptr<TlsContext> context) {
    return impl_->set_tls_context(std::move(context));
}
#endif

}  // namespace myelin::http
