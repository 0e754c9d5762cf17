#include "myelin/auth/password_hasher.hpp"

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

namespace myelin::auth {
namespace {

namespace asio = boost::asio;

// Cheap parameters so the suite stays fast; one test below uses the defaults.
PasswordParams small_params() {
    PasswordParams p;
    p.memory_kib = 8192;
    p.iterations = 1;
    return p;
}

// Runs `aw` to completion on `io`, driven by this thread. Tests declare `io` before the hasher so
// the hasher (and its worker threads, which post completions to `io`) is destroyed first.
template <typename T>
T run_on_io(asio::io_context& io, asio::awaitable<T> aw) {
    std::optional<T> out;
    asio::co_spawn(io, std::move(aw), [&](std::exception_ptr e, T value) {
        if (e) std::rethrow_exception(e);
        out.emplace(std::move(value));
    });
    io.restart();
    io.run();
    if (!out) throw std::logic_error("coroutine did not complete");
    return std::move(*out);
}

TEST(PasswordHasher, HashAndVerify) {
    PasswordHasher hasher(small_params(), 1, 4);
    auto encoded = hasher.hash_sync("correct horse battery staple");
    ASSERT_TRUE(encoded) << encoded.error().message;
    EXPECT_TRUE(encoded->starts_with("$argon2id$v=19$m=8192,t=1,p=1$")) << *encoded;

    auto good = hasher.verify_sync("correct horse battery staple", *encoded);
    ASSERT_TRUE(good);
    EXPECT_TRUE(good->ok);
    EXPECT_FALSE(good->needs_rehash);

    auto bad = hasher.verify_sync("correct horse battery stapler", *encoded);
    ASSERT_TRUE(bad);
    EXPECT_FALSE(bad->ok);
    EXPECT_FALSE(bad->needs_rehash);
}

TEST(PasswordHasher, SaltedSoHashesDiffer) {
    PasswordHasher hasher(small_params(), 1, 4);
    auto a = hasher.hash_sync("same");
    auto b = hasher.hash_sync("same");
    ASSERT_TRUE(a && b);
    EXPECT_NE(*a, *b);
}

TEST(PasswordHasher, DefaultParamsAreOwaspArgon2id) {
    PasswordHasher hasher(PasswordParams{}, 1, 4);
    auto encoded = hasher.hash_sync("hunter2");
    ASSERT_TRUE(encoded) << encoded.error().message;
    EXPECT_TRUE(encoded->starts_with("$argon2id$v=19$m=19456,t=2,p=1$")) << *encoded;
    auto ok = hasher.verify_sync("hunter2", *encoded);
    ASSERT_TRUE(ok);
    EXPECT_TRUE(ok->ok);
    EXPECT_FALSE(ok->needs_rehash);
}

TEST(PasswordHasher, EmptyHashMeansUnknownUserAndNeverMatches) {
    PasswordHasher hasher(small_params(), 1, 4);
    for (const char* pw : {"", "password", "0123456789abcdef0123456789abcdef"}) {
        auto r = hasher.verify_sync(pw, "");
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_FALSE(r->ok);
        EXPECT_FALSE(r->needs_rehash);
    }
}

TEST(PasswordHasher, NeedsRehashWhenParamsChange) {
    PasswordHasher old_hasher(small_params(), 1, 4);
    auto encoded = old_hasher.hash_sync("pw");
    ASSERT_TRUE(encoded);

    PasswordParams more_iterations = small_params();
    more_iterations.iterations = 2;
    PasswordHasher new_hasher(more_iterations, 1, 4);
    auto r = new_hasher.verify_sync("pw", *encoded);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->ok);
    EXPECT_TRUE(r->needs_rehash);

    PasswordParams more_memory = small_params();
    more_memory.memory_kib = 9216;
    PasswordHasher bigger(more_memory, 1, 4);
    auto m = bigger.verify_sync("pw", *encoded);
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->ok);
    EXPECT_TRUE(m->needs_rehash);

    // A wrong password never asks for a rehash (nothing to rehash it with).
    auto wrong = new_hasher.verify_sync("not pw", *encoded);
    ASSERT_TRUE(wrong);
    EXPECT_FALSE(wrong->ok);
    EXPECT_FALSE(wrong->needs_rehash);
}

TEST(PasswordHasher, OverLongPasswordIsInvalidParamNotTruncated) {
    PasswordParams p = small_params();
    p.max_password_bytes = 64;
    asio::io_context io;
    PasswordHasher hasher(p, 1, 4);
    const std::string at_limit(64, 'a');
    const std::string over(65, 'a');
    EXPECT_TRUE(hasher.hash_sync(at_limit));

    auto h = hasher.hash_sync(over);
    ASSERT_FALSE(h);
    EXPECT_EQ(h.error().status, 400);
    EXPECT_EQ(h.error().errcode, "M_INVALID_PARAM");
    EXPECT_NE(h.error().message.find("64"), std::string::npos) << h.error().message;

    auto encoded = hasher.hash_sync(at_limit);
    ASSERT_TRUE(encoded);
    auto v = hasher.verify_sync(over, *encoded);
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().status, 400);
    EXPECT_EQ(v.error().errcode, "M_INVALID_PARAM");
    auto unknown = hasher.verify_sync(over, "");
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().errcode, "M_INVALID_PARAM");

    auto async_h = run_on_io(io, hasher.hash(over));
    ASSERT_FALSE(async_h);
    EXPECT_EQ(async_h.error().status, 400);
    auto async_v = run_on_io(io, hasher.verify(over, *encoded));
    ASSERT_FALSE(async_v);
    EXPECT_EQ(async_v.error().errcode, "M_INVALID_PARAM");
}

TEST(PasswordHasher, UnsupportedStoredHashIsAnError) {
    PasswordHasher hasher(small_params(), 1, 4);
    auto r =
        hasher.verify_sync("pw", "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 500);
    EXPECT_EQ(r.error().errcode, "M_UNKNOWN");
    auto garbage = hasher.verify_sync("pw", "$argon2id$garbage");
    ASSERT_TRUE(garbage);  // recognised scheme, unparsable: simply does not match
    EXPECT_FALSE(garbage->ok);
}

TEST(PasswordHasher, InvalidParamsAreRefused) {
    PasswordParams p = small_params();
    p.iterations = 0;
    EXPECT_FALSE(PasswordHasher::validate(p));
    EXPECT_THROW(PasswordHasher(p, 1, 1), std::invalid_argument);
    p = small_params();
    p.memory_kib = 1;
    EXPECT_FALSE(PasswordHasher::validate(p));
    p = small_params();
    p.max_password_bytes = 0;
    EXPECT_FALSE(PasswordHasher::validate(p));
    EXPECT_TRUE(PasswordHasher::validate(PasswordParams{}));
    EXPECT_TRUE(PasswordHasher::validate(small_params()));
}

TEST(PasswordHasher, AwaitableFormsResumeOnTheCallersThread) {
    asio::io_context io;
    PasswordHasher hasher(small_params(), 2, 4);
    const auto caller = std::this_thread::get_id();
    auto flow = [&]() -> asio::awaitable<bool> {
        auto encoded = co_await hasher.hash("s3cret");
        EXPECT_EQ(std::this_thread::get_id(), caller);
        if (!encoded) co_return false;
        auto good = co_await hasher.verify("s3cret", *encoded);
        EXPECT_EQ(std::this_thread::get_id(), caller);
        auto bad = co_await hasher.verify("S3cret", *encoded);
        auto unknown = co_await hasher.verify("s3cret", "");
        if (!good || !bad || !unknown) co_return false;
        EXPECT_TRUE(good->ok);
        EXPECT_FALSE(bad->ok);
        EXPECT_FALSE(unknown->ok);
        // The async and blocking forms agree.
        auto sync = hasher.verify_sync("s3cret", *encoded);
        EXPECT_TRUE(sync && sync->ok);
        co_return good->ok && !bad->ok && !unknown->ok;
    };
    EXPECT_TRUE(run_on_io(io, flow()));
    EXPECT_EQ(hasher.queue_depth(), 0U);
}

TEST(PasswordHasher, OverloadFailsFastWith503) {
    asio::io_context io;
    PasswordHasher hasher(small_params(), /*threads=*/1, /*max_queue=*/1);
    std::vector<std::optional<Result<std::string>>> results(5);
    for (auto& slot : results) {
        asio::co_spawn(io, hasher.hash("pw"), [&slot](std::exception_ptr e, Result<std::string> r) {
            if (e) std::rethrow_exception(e);
            slot.emplace(std::move(r));
        });
    }
    io.run();

    int ok = 0;
    int overloaded = 0;
    for (auto& r : results) {
        ASSERT_TRUE(r.has_value());
        if (*r) {
            ++ok;
            continue;
        }
        ++overloaded;
        EXPECT_EQ(r->error().status, 503);
        EXPECT_EQ(r->error().errcode, "M_UNKNOWN");
        EXPECT_GT(r->error().retry_after_s, 0);
    }
    // One running plus one waiting are admitted; the five initiations happen well within one
    // hash's time, so the others are refused.
    EXPECT_GE(ok, 1);
    EXPECT_GE(overloaded, 1);
    EXPECT_EQ(ok + overloaded, 5);
}

TEST(PasswordHasher, QueueOfZeroMeansEightPerThread) {
    EXPECT_EQ(PasswordHasher(small_params(), 2, 0).max_queue(),
              2 * PasswordHasher::kQueuePerThread);
    EXPECT_EQ(PasswordHasher(small_params(), 3, 5).max_queue(), 5U);
}

TEST(PasswordHasher, SequentialCallsAreNeverRefused) {
    // One worker and one place in the queue: a caller that awaits each job before the next must
    // always be admitted, i.e. a job stops counting as running before its caller resumes.
    asio::io_context io;
    PasswordHasher hasher(small_params(), /*threads=*/1, /*max_queue=*/1);
    auto flow = [&]() -> asio::awaitable<int> {
        int ok = 0;
        for (int i = 0; i < 20; ++i) {
            auto r = co_await hasher.verify("pw", "");
            EXPECT_TRUE(r) << "call " << i << ": " << (r ? "" : r.error().message);
            if (r) ++ok;
        }
        co_return ok;
    };
    EXPECT_EQ(run_on_io(io, flow()), 20);
}

TEST(PasswordHasher, DestructionFailsWaitingJobs) {
    asio::io_context io;
    std::vector<std::optional<Result<std::string>>> results(4);
    {
        PasswordHasher hasher(small_params(), 1, 8);
        for (auto& slot : results) {
            asio::co_spawn(io, hasher.hash("pw"),
                           [&slot](std::exception_ptr e, Result<std::string> r) {
                               if (e) std::rethrow_exception(e);
                               slot.emplace(std::move(r));
                           });
        }
        io.poll();  // start the coroutines: all four jobs are submitted
    }               // joins the worker; jobs still waiting complete with 503
    io.run();
    int abandoned = 0;
    for (auto& r : results) {
        ASSERT_TRUE(r.has_value());  // every awaiting coroutine is resumed
        if (!*r) {
            ++abandoned;
            EXPECT_EQ(r->error().status, 503);
            EXPECT_EQ(r->error().errcode, "M_UNKNOWN");
        }
    }
    // One worker and four jobs of several ms each: the destructor, reached right after the
    // jobs were queued, finds at least the last one still waiting.
    EXPECT_GE(abandoned, 1);
}

}  // namespace
}  // namespace myelin::auth
