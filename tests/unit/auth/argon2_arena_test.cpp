#include "myelin/auth/argon2_arena.hpp"

#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>
#include <sodium.h>

#include "myelin/auth/password_hasher.hpp"

namespace myelin::auth {
namespace {

namespace asio = boost::asio;

constexpr std::size_t kSmallKib = 8192;

PasswordParams small_params() {
    PasswordParams p;
    p.memory_kib = kSmallKib;
    p.iterations = 1;
    return p;
}

std::unique_ptr<Argon2Arena> small_arena() {
    auto arena = Argon2Arena::create(kSmallKib * 1024);
    if (arena == nullptr) throw std::runtime_error("cannot map an arena");
    return arena;
}

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

TEST(Argon2Arena, CapacityIsRoundedUpAndStartsZeroed) {
    auto arena = Argon2Arena::create(5 * 1024 * 1024 + 1);
    ASSERT_NE(arena, nullptr);
    EXPECT_EQ(arena->capacity(), std::size_t{6} << 20);
    EXPECT_TRUE(arena->all_zero());
    EXPECT_EQ(arena->lends(), 0U);
}

TEST(Argon2Arena, LentMappingIsTheArenaAndItsUnmapWipesIt) {
    auto arena = small_arena();
    void* region = nullptr;
    {
        const Argon2Arena::Lend lend(arena.get());
        region =
            mmap(nullptr, 4096 * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_NE(region, MAP_FAILED);
        std::memset(region, 0xA5, 4096 * 3);  // stands for argon2's password-derived blocks
        EXPECT_FALSE(arena->all_zero());
        // While lent, a second mapping is the system's, and so is its unmapping.
        void* other =
            mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_NE(other, MAP_FAILED);
        EXPECT_NE(other, region);
        EXPECT_EQ(munmap(other, 4096), 0);
        EXPECT_EQ(munmap(region, 4096 * 3), 0);
    }
    EXPECT_EQ(arena->lends(), 1U);
    EXPECT_TRUE(arena->all_zero());
    // The arena is still mapped and writable: the munmap above did not reach the kernel.
    std::memset(region, 0, 16);
}

TEST(Argon2Arena, OnlyPlainAnonymousMappingsThatFitAreServed) {
    auto arena = small_arena();
    const Argon2Arena::Lend lend(arena.get());
    const std::size_t too_big = arena->capacity() + 4096;
    void* big = mmap(nullptr, too_big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(big, MAP_FAILED);
    EXPECT_EQ(munmap(big, too_big), 0);
    void* read_only = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(read_only, MAP_FAILED);
    EXPECT_EQ(munmap(read_only, 4096), 0);
    void* shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(shared, MAP_FAILED);
    EXPECT_EQ(munmap(shared, 4096), 0);
    EXPECT_EQ(arena->lends(), 0U);
}

TEST(Argon2Arena, WithoutALendNothingIsServed) {
    auto arena = small_arena();
    const Argon2Arena::Bind bind(arena.get());  // bound, but no Lend around the call
    void* region = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(region, MAP_FAILED);
    EXPECT_EQ(munmap(region, 4096), 0);
    EXPECT_EQ(arena->lends(), 0U);
}

TEST(Argon2Arena, LendIsPerThread) {
    auto arena = small_arena();
    const Argon2Arena::Lend lend(arena.get());
    std::thread other([] {
        void* region =
            mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        EXPECT_NE(region, MAP_FAILED);
        EXPECT_EQ(munmap(region, 4096), 0);
    });
    other.join();
    EXPECT_EQ(arena->lends(), 0U);
}

TEST(Argon2Arena, HasherUsesTheBoundArenaAndWipesIt) {
    PasswordHasher hasher(small_params(), 1, 4);
    auto arena = small_arena();
    std::string encoded;
    {
        const Argon2Arena::Bind bind(arena.get());
        auto h = hasher.hash_sync("correct horse battery staple");
        ASSERT_TRUE(h) << h.error().message;
        encoded = *h;
        // The configured parameters still apply.
        EXPECT_TRUE(encoded.starts_with("$argon2id$v=19$m=8192,t=1,p=1$")) << encoded;
        EXPECT_EQ(arena->lends(), 1U);
        EXPECT_TRUE(arena->all_zero());

        auto ok = hasher.verify_sync("correct horse battery staple", encoded);
        ASSERT_TRUE(ok);
        EXPECT_TRUE(ok->ok);
        auto wrong = hasher.verify_sync("correct horse battery stapler", encoded);
        ASSERT_TRUE(wrong);
        EXPECT_FALSE(wrong->ok);
        auto unknown = hasher.verify_sync("anything", "");
        ASSERT_TRUE(unknown);
        EXPECT_FALSE(unknown->ok);
        EXPECT_EQ(arena->lends(), 4U);
        EXPECT_TRUE(arena->all_zero());
    }
    // The same string verifies with libsodium mapping its own memory, and libsodium's own
    // verification agrees.
    auto plain = hasher.verify_sync("correct horse battery staple", encoded);
    ASSERT_TRUE(plain);
    EXPECT_TRUE(plain->ok);
    const std::string pw = "correct horse battery staple";
    EXPECT_EQ(crypto_pwhash_str_verify(encoded.c_str(), pw.data(), pw.size()), 0);
    EXPECT_EQ(arena->lends(), 4U);
}

TEST(Argon2Arena, HashMadeWithoutArenaVerifiesWithIt) {
    const std::string pw = "hunter2";
    char out[crypto_pwhash_STRBYTES];
    ASSERT_EQ(crypto_pwhash_str_alg(out, pw.data(), pw.size(), 1, kSmallKib * 1024,
                                    crypto_pwhash_ALG_ARGON2ID13),
              0);
    PasswordHasher hasher(small_params(), 1, 4);
    auto arena = small_arena();
    const Argon2Arena::Bind bind(arena.get());
    auto ok = hasher.verify_sync(pw, out);
    ASSERT_TRUE(ok);
    EXPECT_TRUE(ok->ok);
    EXPECT_FALSE(ok->needs_rehash);
    auto wrong = hasher.verify_sync("hunter3", out);
    ASSERT_TRUE(wrong);
    EXPECT_FALSE(wrong->ok);
    EXPECT_EQ(arena->lends(), 2U);
}

TEST(Argon2Arena, LargerMemoryCostThanTheArenaFallsBackToMapping) {
    PasswordParams bigger = small_params();
    bigger.memory_kib = kSmallKib + 4096;  // 12 MiB: more than the 8 MiB arena
    PasswordHasher big_hasher(bigger, 1, 4);
    auto encoded = big_hasher.hash_sync("pw");
    ASSERT_TRUE(encoded);

    PasswordHasher hasher(small_params(), 1, 4);
    auto arena = small_arena();
    const Argon2Arena::Bind bind(arena.get());
    auto r = hasher.verify_sync("pw", *encoded);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->ok);
    EXPECT_TRUE(r->needs_rehash);
    EXPECT_EQ(arena->lends(), 0U);
}

TEST(Argon2Arena, WorkersHoldOneArenaEachAndFreeThemAtShutdown) {
    const std::size_t before = Argon2Arena::live();
    {
        asio::io_context io;
        PasswordHasher hasher(small_params(), 1, 4);
        EXPECT_EQ(hasher.arenas_held(), 0U);  // made at the first job, not at start-up
        auto h = run_on_io(io, hasher.hash("pw"));
        ASSERT_TRUE(h) << h.error().message;
        auto v = run_on_io(io, hasher.verify("pw", *h));
        ASSERT_TRUE(v);
        EXPECT_TRUE(v->ok);
        EXPECT_EQ(hasher.arenas_held(), 1U);
        EXPECT_EQ(Argon2Arena::live(), before + 1);
    }
    EXPECT_EQ(Argon2Arena::live(), before);
}

TEST(Argon2Arena, IdleWorkersReleaseTheirArena) {
    asio::io_context io;
    PasswordHasher hasher(small_params(), 1, 4, std::chrono::milliseconds(1));
    auto h = run_on_io(io, hasher.hash("pw"));
    ASSERT_TRUE(h) << h.error().message;
    // Waits for the release (not a timing assertion: the bound only keeps a broken build from
    // hanging the suite).
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (hasher.arenas_held() != 0 && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(hasher.arenas_held(), 0U);
    // The next job maps a new one.
    auto v = run_on_io(io, hasher.verify("pw", *h));
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->ok);
}

}  // namespace
}  // namespace myelin::auth
