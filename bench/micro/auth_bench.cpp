// Micro-benchmarks of the token and password primitives in auth/: what every authenticated
// request pays (parse + keyed hash) and what a login pays (argon2id at the OWASP setting).
// main() comes from bench_main.cpp.

#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "myelin/auth/password_hasher.hpp"
#include "myelin/auth/server_secret.hpp"
#include "myelin/auth/token_format.hpp"
#include "myelin/auth/token_hasher.hpp"

namespace {

using myelin::auth::TokenKind;

void BM_GenerateToken(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(myelin::auth::generate_token(TokenKind::kAccess));
    }
}
BENCHMARK(BM_GenerateToken);

void BM_ParseToken(benchmark::State& state) {
    const std::string token = myelin::auth::generate_token(TokenKind::kAccess);
    for (auto _ : state) {
        benchmark::DoNotOptimize(myelin::auth::parse_token(token));
    }
}
BENCHMARK(BM_ParseToken);

void BM_HashToken(benchmark::State& state) {
    const auto secret = myelin::auth::ServerSecret::generate();
    const myelin::auth::TokenHasher hasher(secret);
    const std::string token = myelin::auth::generate_token(TokenKind::kAccess);
    for (auto _ : state) {
        benchmark::DoNotOptimize(hasher.hash(token));
    }
}
BENCHMARK(BM_HashToken);

// argon2id m=19 MiB, t=2, p=1 on the calling thread; ~18 ms each, so few iterations.
void BM_PasswordHashOwasp(benchmark::State& state) {
    const myelin::auth::PasswordHasher hasher(myelin::auth::PasswordParams{}, 1, 0);
    for (auto _ : state) {
        auto r = hasher.hash_sync("correct horse battery staple");
        if (!r) {
            state.SkipWithError("hash failed");
            break;
        }
        benchmark::DoNotOptimize(*r);
    }
}
BENCHMARK(BM_PasswordHashOwasp)->Unit(benchmark::kMillisecond)->Iterations(20);

}  // namespace
