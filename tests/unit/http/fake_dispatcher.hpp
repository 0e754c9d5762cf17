#pragma once

// A scripted Dispatcher for the server tests. Routes by decoded path:
//   /now        handle_now answers 200 "now"          /throw-now  handle_now throws
//   /empty      handle_now answers 204, no body        /user       handle_now answers, sets
//   log_user /missing    handle answers 404 M_UNRECOGNIZED      /throw      handle throws /slow
//   handle waits 200 ms on a timer         /hang       handle waits 10 s on a timer /small body
//   limit 1024 bytes                  /park       handle waits until release_parked is set
//   anything else: handle echoes path + body size
// Thread-safe like a real Dispatcher: counters are atomic, the last request is kept under a lock.

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"
#include "myelin/http/server.hpp"

namespace myelin::http::testing {

class FakeDispatcher : public Dispatcher {
public:
    std::optional<std::size_t> body_limit(Method, std::string_view path) const override {
        if (path == "/small") return 1024;
        return std::nullopt;
    }

    std::optional<Response> handle_now(Request& request) override {
        ++handle_now_calls;
        remember(request);
        if (request.path == "/now") return text("now");
        if (request.path == "/throw-now") throw std::runtime_error("boom in handle_now");
        if (request.path == "/empty") {
            Response r;
            r.status = 204;
            return r;
        }
        if (request.path == "/user") {
            Response r = text("hello");
            r.log_user = "@alice:test";
            return r;
        }
        return std::nullopt;
    }

    boost::asio::awaitable<Response> handle(Request& request) override {
        ++handle_calls;
        if (request.path == "/throw") throw std::runtime_error("boom in handle");
        if (request.path == "/missing") co_return error_response(errors::unrecognized());
        if (request.path == "/slow" || request.path == "/hang") {
            ++slow_started;
            boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
            timer.expires_after(request.path == "/slow" ? std::chrono::milliseconds(200)
                                                        : std::chrono::milliseconds(10'000));
            co_await timer.async_wait(boost::asio::use_awaitable);  // throws when cancelled
            ++slow_finished;
            co_return text("slow done");
        }
        if (request.path == "/park") {
            ++parked;
            boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
            while (!release_parked) {
                timer.expires_after(std::chrono::milliseconds(2));
                co_await timer.async_wait(boost::asio::use_awaitable);  // throws when cancelled
            }
            co_return text("parked done");
        }
        boost::json::object body;
        body["path"] = request.path;
        body["body_size"] = request.body.size();
        co_return json_response(body);
    }

    Request last_request() const {
        std::lock_guard lock(mutex_);
        return last_;
    }

    std::atomic<int> handle_now_calls{0};
    std::atomic<int> handle_calls{0};
    std::atomic<int> slow_started{0};
    std::atomic<int> slow_finished{0};
    std::atomic<int> parked{0};               // /park requests begun
    std::atomic<bool> release_parked{false};  // lets every /park request answer

private:
    static Response text(std::string body) {
        Response r;
        r.content_type = "text/plain";
        r.body = std::move(body);
        return r;
    }

    void remember(const Request& request) {
        std::lock_guard lock(mutex_);
        last_ = request;
    }

    mutable std::mutex mutex_;
    Request last_;  // guarded by mutex_
};

}  // namespace myelin::http::testing
