// Which argon2id implementation should the server use? One OWASP verification (m = 19456 KiB,
// t = 2, p = 1) of the same PHC string, on one and on two threads at once:
//   Libsodium        crypto_pwhash_str_verify, libsodium maps and unmaps its memory per call
//   LibsodiumArena   the same call in a per-thread Argon2Arena (what the server's workers do)
//   Libargon2        Debian's libargon2 (argon2_ctx), its default malloc per call
//   Libargon2Arena   libargon2 with allocate_cbk/free_cbk serving the same per-thread arena
// Built only when libargon2-dev is installed (bench/CMakeLists.txt); not part of make bench. The
// server does not link libargon2: see bench/README.md (login) for the figures and the decision.

#include <argon2.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <sodium.h>

#include "myelin/auth/argon2_arena.hpp"

namespace {

using myelin::auth::Argon2Arena;

constexpr const char* kPassword = "correct horse battery staple";
constexpr std::size_t kMemoryKib = 19456;

// The stored hash, made by libsodium, and its fields decoded for libargon2's argon2_ctx.
struct Stored {
    std::string encoded;
    std::uint32_t m = 0, t = 0, p = 0;
    std::vector<std::uint8_t> salt, hash;

    static const Stored& get() {
        static const Stored s = make();
        return s;
    }

private:
    static std::vector<std::uint8_t> base64(const char* text) {
        std::vector<std::uint8_t> out(std::strlen(text));
        std::size_t n = 0;
        if (sodium_base642bin(out.data(), out.size(), text, std::strlen(text), nullptr, &n, nullptr,
                              sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0) {
            throw std::runtime_error("bad base64 in the PHC string");
        }
        out.resize(n);
        return out;
    }
    static Stored make() {
        if (sodium_init() < 0) throw std::runtime_error("sodium_init failed");
        char out[crypto_pwhash_STRBYTES];
        if (crypto_pwhash_str_alg(out, kPassword, std::strlen(kPassword), 2, kMemoryKib * 1024,
                                  crypto_pwhash_ALG_ARGON2ID13) != 0) {
            throw std::runtime_error("hash failed");
        }
        Stored s;
        s.encoded = out;
        unsigned version = 0;
        char salt[128];
        char hash[128];
        if (std::sscanf(out, "$argon2id$v=%u$m=%u,t=%u,p=%u$%127[^$]$%127s", &version, &s.m, &s.t,
                        &s.p, salt, hash) != 6) {
            throw std::runtime_error("unexpected PHC string");
        }
        s.salt = base64(salt);
        s.hash = base64(hash);
        // Both libraries read the same standard string.
        if (argon2id_verify(out, kPassword, std::strlen(kPassword)) != ARGON2_OK) {
            throw std::runtime_error("libargon2 does not verify libsodium's hash");
        }
        return s;
    }
};

// libargon2's allocator callbacks: an anonymous mapping taken inside Argon2Arena::Lend is the
// thread's arena, and its munmap wipes it (the same path as libsodium's in the server).
int arena_allocate(std::uint8_t** memory, std::size_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return ARGON2_MEMORY_ALLOCATION_ERROR;
    *memory = static_cast<std::uint8_t*>(p);
    return ARGON2_OK;
}

void arena_free(std::uint8_t* memory, std::size_t bytes) { munmap(memory, bytes); }

bool libargon2_verify(const Stored& s, bool arena) {
    std::uint8_t out[64];
    argon2_context c{};
    c.out = out;
    c.outlen = static_cast<std::uint32_t>(s.hash.size());
    c.pwd = reinterpret_cast<std::uint8_t*>(const_cast<char*>(kPassword));
    c.pwdlen = static_cast<std::uint32_t>(std::strlen(kPassword));
    c.salt = const_cast<std::uint8_t*>(s.salt.data());
    c.saltlen = static_cast<std::uint32_t>(s.salt.size());
    c.t_cost = s.t;
    c.m_cost = s.m;
    c.lanes = s.p;
    c.threads = 1;
    c.version = ARGON2_VERSION_13;
    if (arena) {
        c.allocate_cbk = arena_allocate;
        c.free_cbk = arena_free;
    }
    if (argon2_ctx(&c, Argon2_id) != ARGON2_OK) return false;
    return sodium_memcmp(out, s.hash.data(), s.hash.size()) == 0;
}

bool libsodium_verify(const Stored& s) {
    return crypto_pwhash_str_verify(s.encoded.c_str(), kPassword, std::strlen(kPassword)) == 0;
}

std::unique_ptr<Argon2Arena> arena_for(bool with_arena) {
    if (!with_arena) return nullptr;
    auto arena = Argon2Arena::create(kMemoryKib * 1024);
    if (arena == nullptr) throw std::runtime_error("cannot map the arena");
    return arena;
}

template <bool Libsodium, bool WithArena>
void BM_Argon2idVerifyOwasp(benchmark::State& state) {
    const Stored& s = Stored::get();
    auto arena = arena_for(WithArena);
    for (auto _ : state) {
        const Argon2Arena::Lend lend(arena.get());
        const bool ok = Libsodium ? libsodium_verify(s) : libargon2_verify(s, WithArena);
        if (!ok) {
            state.SkipWithError("verification failed");
            break;
        }
    }
    if (arena != nullptr && arena->lends() == 0) state.SkipWithError("the arena was never used");
    state.SetItemsProcessed(state.iterations());
}

void BM_Libsodium(benchmark::State& state) { BM_Argon2idVerifyOwasp<true, false>(state); }
void BM_LibsodiumArena(benchmark::State& state) { BM_Argon2idVerifyOwasp<true, true>(state); }
void BM_Libargon2(benchmark::State& state) { BM_Argon2idVerifyOwasp<false, false>(state); }
void BM_Libargon2Arena(benchmark::State& state) { BM_Argon2idVerifyOwasp<false, true>(state); }

BENCHMARK(BM_Libsodium)->Unit(benchmark::kMillisecond)->UseRealTime()->Threads(1)->Threads(2);
BENCHMARK(BM_LibsodiumArena)->Unit(benchmark::kMillisecond)->UseRealTime()->Threads(1)->Threads(2);
BENCHMARK(BM_Libargon2)->Unit(benchmark::kMillisecond)->UseRealTime()->Threads(1)->Threads(2);
BENCHMARK(BM_Libargon2Arena)->Unit(benchmark::kMillisecond)->UseRealTime()->Threads(1)->Threads(2);

}  // namespace

BENCHMARK_MAIN();
