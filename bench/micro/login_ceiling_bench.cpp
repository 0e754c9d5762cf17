// The CPU ceiling for POST /login: one argon2id verification with the OWASP parameters
// (m = 19456 KiB, t = 2, p = 1), through the server's own PasswordHasher (libsodium), on one
// thread that holds an Argon2Arena as each hashing worker does. bench/run_bench.py takes ceiling
// logins/s = cores / (seconds per verification) and divides the server's measured logins/s by
// it. The hash is listed too (a registration's cost). The /threads:2 variant shows how much two
// concurrent hashes slow each other (shared memory bandwidth and caches), for reading the
// ceiling, not for computing it. The *NoArena variants are the same calls with libsodium mapping
// and unmapping its 19 MiB per call (what the server did before the arena), for comparison.

#include <memory>
#include <stdexcept>
#include <string>

#include <benchmark/benchmark.h>

#include "myelin/auth/argon2_arena.hpp"
#include "myelin/auth/password_hasher.hpp"

namespace {

using myelin::auth::Argon2Arena;
using myelin::auth::PasswordHasher;
using myelin::auth::PasswordParams;

constexpr const char* kPassword = "correct horse battery staple";

// One hasher (a single worker, unused here: only the *_sync forms run) and one stored hash.
struct Owasp {
    PasswordHasher hasher{PasswordParams{}, 1, 16};
    std::string encoded;

    Owasp() {
        auto h = hasher.hash_sync(kPassword);
        if (!h) throw std::runtime_error("argon2id hash failed: " + h.error().message);
        encoded = std::move(*h);
    }
    static Owasp& get() {
        static Owasp owasp;
        return owasp;
    }
};

// The benchmark thread's arena, as a hashing worker has (none for the *NoArena variants).
std::unique_ptr<Argon2Arena> arena_for(bool with_arena) {
    if (!with_arena) return nullptr;
    auto arena = Argon2Arena::create(PasswordParams{}.memory_kib * 1024U);
    if (arena == nullptr) throw std::runtime_error("cannot map the argon2 arena");
    return arena;
}

void verify_owasp(benchmark::State& state, bool with_arena) {
    Owasp& o = Owasp::get();
    auto arena = arena_for(with_arena);
    const Argon2Arena::Bind bind(arena.get());
    for (auto _ : state) {
        auto r = o.hasher.verify_sync(kPassword, o.encoded);
        if (!r || !r->ok) {
            state.SkipWithError("argon2id verification failed");
            break;
        }
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(state.iterations());
}

void hash_owasp(benchmark::State& state, bool with_arena) {
    Owasp& o = Owasp::get();
    auto arena = arena_for(with_arena);
    const Argon2Arena::Bind bind(arena.get());
    for (auto _ : state) {
        auto r = o.hasher.hash_sync(kPassword);
        if (!r) {
            state.SkipWithError("argon2id hash failed");
            break;
        }
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_LoginCeilingArgon2idVerifyOwasp(benchmark::State& state) { verify_owasp(state, true); }
void BM_LoginCeilingArgon2idVerifyOwaspNoArena(benchmark::State& state) {
    verify_owasp(state, false);
}
void BM_LoginCeilingArgon2idHashOwasp(benchmark::State& state) { hash_owasp(state, true); }
void BM_LoginCeilingArgon2idHashOwaspNoArena(benchmark::State& state) { hash_owasp(state, false); }

BENCHMARK(BM_LoginCeilingArgon2idVerifyOwasp)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Threads(1)
    ->Threads(2);
BENCHMARK(BM_LoginCeilingArgon2idVerifyOwaspNoArena)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Threads(1)
    ->Threads(2);
BENCHMARK(BM_LoginCeilingArgon2idHashOwasp)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LoginCeilingArgon2idHashOwaspNoArena)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
