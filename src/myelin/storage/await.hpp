#pragma once

// Running storage jobs from coroutines (awaitable) and from plain threads (blocking). The job
// runs on the backend's thread; the coroutine resumes on its own executor. The blocking forms
// are for the CLI and tests, never for network threads.

#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "myelin/storage/database.hpp"

namespace myelin::storage {

namespace detail {

// Runs fn, turning an escaping exception (a bug) into a 500 so that the waiter always resumes.
template <typename T, typename Fn, typename Txn>
Result<T> run_guarded(Fn& fn, Txn& txn) {
    try {
        return fn(txn);
    } catch (const std::exception& e) {
        return errors::internal(std::string("storage job failed: ") + e.what());
    }
}

inline Error database_unavailable() {
    return errors::unavailable("The database is unavailable; try again shortly");
}

// Posts `result` to the handler's associated executor and invokes it there.
template <typename Handler, typename T>
void complete_on_executor(Handler& handler, T result) {
    auto ex = boost::asio::get_associated_executor(handler);
    boost::asio::post(ex, [h = std::move(handler), r = std::move(result)]() mutable {
        std::move(h)(std::move(r));
    });
}

}  // namespace detail

// Runs fn(ReadTxn&) -> Result<T> on a reader and awaits its result.
// Not a coroutine itself (g++ 12 mishandles non-trivial coroutine parameters and temporaries in
// co_await expressions): it returns the awaitable that async_initiate builds. Callers should
// pass a named callable (std::move(local)) rather than a lambda written inside `co_await`.
template <typename T, typename Fn>
boost::asio::awaitable<Result<T>> read(Database& db, Fn fn) {
    auto initiation = [&db, fn = std::move(fn)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        db.post_read([fn = std::move(fn), shared](ReadTxn* txn) mutable {
            Result<T> r =
                txn ? detail::run_guarded<T>(fn, *txn) : Result<T>(detail::database_unavailable());
            detail::complete_on_executor(*shared, std::move(r));
        });
    };
    return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(Result<T>)>(
        std::move(initiation), boost::asio::use_awaitable);
}

// Runs fn(WriteTxn&) -> Result<T> on the writer and awaits its result, which is delivered only
// once the commit is durable. An error from fn rolls back fn's changes and is returned as is.
// Not a coroutine itself, for the same reason as read(). `after_commit` (optional) runs on the
// writer's thread once the commit is durable and fn succeeded, before the awaiting coroutine is
// resumed: for notifications that must not be seen before the data is (UserNotifier).
// `counters`: the shared stream counters fn may bump (WriteJob::counters).
template <typename T, typename Fn>
boost::asio::awaitable<Result<T>> write(Database& db, Fn fn,
                                        std::function<void()> after_commit = {},
                                        SharedCounters counters = 0) {
    auto initiation = [&db, fn = std::move(fn), after_commit = std::move(after_commit),
                       counters](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        auto slot = std::make_shared<std::optional<Result<T>>>();
        WriteJob job;
        job.counters = counters;
        job.run = [fn = std::move(fn), slot](WriteTxn& txn) mutable -> Result<void> {
            slot->emplace(fn(txn));
            if (!**slot) return (**slot).error();
            return {};
        };
        job.on_committed = [slot, shared,
                            after_commit = std::move(after_commit)](const Result<void>& committed) {
            if (!slot->has_value() || (!committed && **slot)) {
                detail::complete_on_executor(
                    *shared,
                    Result<T>(committed ? detail::database_unavailable() : committed.error()));
            } else {
                if (committed && **slot && after_commit) after_commit();
                detail::complete_on_executor(*shared, std::move(**slot));
            }
        };
        db.post_write(std::move(job));
    };
    return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(Result<T>)>(
        std::move(initiation), boost::asio::use_awaitable);
}

// Blocking form of read(): for the CLI, start-up and tests only.
template <typename T, typename Fn>
Result<T> read_sync(Database& db, Fn fn) {
    std::promise<Result<T>> promise;
    auto future = promise.get_future();
    db.post_read([&](ReadTxn* txn) {
        promise.set_value(txn ? detail::run_guarded<T>(fn, *txn)
                              : Result<T>(detail::database_unavailable()));
    });
    return future.get();
}

// Blocking form of write(): for the CLI, start-up and tests only.
template <typename T, typename Fn>
Result<T> write_sync(Database& db, Fn fn, SharedCounters counters = 0) {
    std::promise<Result<T>> promise;
    auto future = promise.get_future();
    auto slot = std::make_shared<std::optional<Result<T>>>();
    WriteJob job;
    job.counters = counters;
    job.run = [&fn, slot](WriteTxn& txn) -> Result<void> {
        slot->emplace(fn(txn));
        if (!**slot) return (**slot).error();
        return {};
    };
    job.on_committed = [&promise, slot](const Result<void>& committed) {
        if (!slot->has_value() || (!committed && **slot)) {
            promise.set_value(
                Result<T>(committed ? detail::database_unavailable() : committed.error()));
        } else {
            promise.set_value(std::move(**slot));
        }
    };
    db.post_write(std::move(job));
    return future.get();
}

}  // namespace myelin::storage
