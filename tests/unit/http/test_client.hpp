#pragma once

// A tiny blocking HTTP/1.1 client for the server tests: raw bytes over a loopback TCP socket,
// every wait bounded by a timeout so a misbehaving server fails a test instead of hanging it.
// One client per connection; not thread-safe.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace myelin::http::testing {

using namespace std::chrono_literals;

struct HttpReply {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    // The first header named `name` (case-insensitive), or nullopt.
    std::optional<std::string> header(std::string_view name) const;
};

class TestClient {
public:
    // Connects to 127.0.0.1:`port`; connected() tells whether it worked.
    explicit TestClient(std::uint16_t port);
    ~TestClient();
    TestClient(const TestClient&) = delete;
    TestClient& operator=(const TestClient&) = delete;

    bool connected() const { return fd_ >= 0; }
    // Sends all of `data`; false on a socket error (e.g. the server closed the connection).
    bool send(std::string_view data);
    // Reads one response (status line, headers, Content-Length body; no body for a HEAD
    // answer when `head`). nullopt on EOF, error, timeout or an unparsable answer.
    std::optional<HttpReply> read_reply(bool head = false,
                                        std::chrono::milliseconds timeout = 3000ms);
    // Waits until the server closes the connection: true when EOF (or a reset) comes within
    // `timeout`; bytes received before it are appended to `received` (if given).
    bool wait_closed(std::chrono::milliseconds timeout = 3000ms, std::string* received = nullptr);
    void close();

private:
    // Reads more bytes into pending_: >0 bytes read, 0 EOF, -1 error or timeout.
    long fill(std::chrono::steady_clock::time_point deadline);

    int fd_ = -1;
    std::string pending_;
};

// "GET `target` HTTP/1.1" with Host and the given extra header lines (each "Name: value").
std::string make_request(std::string_view method, std::string_view target,
                         const std::vector<std::string>& headers = {}, std::string_view body = {});

}  // namespace myelin::http::testing
