// The storage ceiling for POST /refresh: durable refresh-token rotations per second through the
// real backends (SQLite: WAL, synchronous=FULL, one group-committing writer), without HTTP, JSON
// or coroutines. bench/run_bench.py divides the server's end-to-end rotations/s by the SQLite
// figure.
//
// One rotation is the write job that SessionService::refresh_in_txn runs for a modern refresh:
// find_refresh_token, then the compare-and-swap of the session's generations, the new access and
// refresh tokens, the wipe of older sealed successors and the seal on the old token (with a blob
// of the size the real sealer produces), as five separate calls (update_session_generations,
// insert_access_token, insert_refresh_token, wipe_sealed_successors, set_sealed_successor; with
// the lookup six statements, on PostgreSQL each a round trip). The "one call" variants do the
// same with WriteTxn::rotate_session, one statement on PostgreSQL, which was measured slower
// there under concurrency and is not what the service uses (bench/README.md). Every benchmark
// thread owns its sessions and rotates their chains, each rotation submitted with write_sync and
// waited for, like one HTTP connection; with many threads SQLite's writer commits queued jobs
// together (group commit) and PostgreSQL runs up to pool_size (8) jobs at once.
//
//   BM_StorageRotation            token hashes and the blob are random bytes (storage alone)
//   BM_StorageRotationOneCall     the same with rotate_session
//   BM_StorageRotationWithCrypto  the job also does what the service does on the writer thread:
//                                 generate two tokens, hash them, seal the successor pair
//   BM_StorageRotationAged/N      as the first, on sessions already refreshed N times (the
//                                 server keeps every rotated-out refresh token of a session)
//   BM_StorageRotationMatched     the ceiling run_bench.py uses: see the end of this file
//   BM_PgRotation/<form>          PostgreSQL, registered only when MYELIN_TEST_POSTGRES_URL is set
//                                 (e.g. under scripts/pg-test-cluster.sh): form `statements` or
//                                 `one_statement`, 1, 8 and 64 threads, the pairs interleaved
//                                 MYELIN_BENCH_PG_ROUNDS times (default 3), in alternating order,
//                                 so that both forms see the same machine. A fresh database on that
//                                 cluster, dropped at exit; server defaults (synchronous_commit on,
//                                 8 connections; MYELIN_BENCH_PG_SYNCHRONOUS_COMMIT=off: not
//                                 durable, to show what the round trips alone cost).
//
// Counters: items_per_second = rotations/s (all threads); jobs_per_commit = average group size
// (SQLite); cpu_us_per_rotation = this process's CPU (getrusage) per rotation (on PostgreSQL the
// server's CPU is not in it); rotations_per_session; lost_races = serialization races lost (job
// runs beyond one per rotation; PostgreSQL's write jobs are SERIALIZABLE and run again when they
// lose one); gave_up = jobs that lost max_attempts (30) races in a row, where the service answers
// 503 (the benchmark submits such a rotation again, as a client would, and counts it).
//
// The SQLite database lives in a fresh folder under $MYELIN_BENCH_DIR (else the system temp
// folder), removed at exit. Thread-safety: the Database is shared; everything else is per thread.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "myelin/auth/server_secret.hpp"
#include "myelin/auth/successor_seal.hpp"
#include "myelin/auth/token_format.hpp"
#include "myelin/auth/token_hasher.hpp"
#include "myelin/core/log.hpp"
#include "myelin/core/postgres_url.hpp"
#include "myelin/storage/await.hpp"
#include "myelin/storage/database.hpp"
#include "myelin/storage/postgres/pg_connection.hpp"
#include "myelin/storage/postgres/pg_database.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

namespace {

using myelin::Result;
namespace storage = myelin::storage;
namespace auth = myelin::auth;

constexpr std::int64_t kAccessLifetimeMs = 5 * 60 * 1000;         // the default "5m"
constexpr std::int64_t kIdleTimeoutMs = 90LL * 24 * 3600 * 1000;  // the default "90d"

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

double process_cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto sec = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
    return sec(ru.ru_utime) + sec(ru.ru_stime);
}

enum class Backend { kSqlite, kPostgres };
// How the job writes a rotation: WriteTxn::rotate_session, or the six calls it replaced.
enum class Form { kOneCall, kStatements };

// The PostgreSQL cluster named by MYELIN_TEST_POSTGRES_URL, or nullopt.
std::optional<myelin::PostgresUrl> bench_postgres_url() {
    const char* url = std::getenv("MYELIN_TEST_POSTGRES_URL");
    if (url == nullptr || *url == '\0') return std::nullopt;
    auto parsed = myelin::parse_postgres_url(url);
    if (!parsed) throw std::runtime_error("MYELIN_TEST_POSTGRES_URL: " + parsed.error().message);
    return *parsed;
}

storage::pg::ConnectionSettings settings_of(const myelin::PostgresUrl& url,
                                            const std::string& dbname) {
    storage::pg::ConnectionSettings s;
    s.host = url.host;
    s.port = url.port;
    s.user = url.user;
    s.password = url.password;
    s.dbname = dbname;
    s.application_name = "myelin-bench";
    return s;
}

// Runs `sql` on the cluster's maintenance database (the URL's); throws on failure.
void run_on_cluster(const myelin::PostgresUrl& url, const std::string& sql) {
    auto conn = storage::pg::Connection::open(settings_of(url, url.dbname));
    if (!conn) throw std::runtime_error("PostgreSQL: " + conn.error().message);
    if (auto r = (*conn)->exec(sql.c_str()); !r) {
        throw std::runtime_error("PostgreSQL: " + r.error().message);
    }
}

// The database, the secrets and the commit counters of one backend, shared by every benchmark
// of this file.
class BenchStore {
public:
    static BenchStore& get(Backend backend = Backend::kSqlite) {
        if (backend == Backend::kPostgres) {
            static BenchStore pg_store(Backend::kPostgres);
            return pg_store;
        }
        static BenchStore store(Backend::kSqlite);  // thread-safe initialisation, destroyed at exit
        return store;
    }

    storage::Database& db() { return *db_; }
    const auth::TokenHasher& hasher() const { return hasher_; }
    const auth::SuccessorSealer& sealer() const { return sealer_; }
    std::size_t blob_size() const { return blob_size_; }
    std::uint64_t commits() const { return commits_.load(std::memory_order_relaxed); }
    std::uint64_t jobs() const { return jobs_.load(std::memory_order_relaxed); }
    // Runs of rotation job bodies (a job that loses a serialization race runs again), and
    // rotation jobs that lost every run (the backend's max_attempts; the service answers 503).
    void count_attempt() { attempts_.fetch_add(1, std::memory_order_relaxed); }
    void count_gave_up() { gave_up_.fetch_add(1, std::memory_order_relaxed); }
    std::uint64_t attempts() const { return attempts_.load(std::memory_order_relaxed); }
    std::uint64_t gave_up() const { return gave_up_.load(std::memory_order_relaxed); }

    ~BenchStore() {
        if (db_) db_->close();
        db_.reset();
        if (pg_url_) {
            try {
                run_on_cluster(*pg_url_, "DROP DATABASE IF EXISTS " + pg_dbname_ + " WITH (FORCE)");
            } catch (const std::exception& e) {
                std::fprintf(stderr, "storage_bench: %s\n", e.what());
            }
        }
        std::error_code ec;
        if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    }

private:
    explicit BenchStore(Backend backend)
        : secret_(auth::ServerSecret::generate()), hasher_(secret_), sealer_(secret_) {
        myelin::log::app()->set_level(spdlog::level::warn);
        if (backend == Backend::kPostgres) {
            open_postgres_db();
        } else {
            open_sqlite_db();
        }
        setup();
    }

    void open_postgres_db() {
        pg_url_ = bench_postgres_url();
        if (!pg_url_) throw std::runtime_error("MYELIN_TEST_POSTGRES_URL is not set");
        pg_dbname_ = "myelin_bench_" + std::to_string(::getpid());
        run_on_cluster(*pg_url_, "DROP DATABASE IF EXISTS " + pg_dbname_ + " WITH (FORCE)");
        run_on_cluster(*pg_url_, "CREATE DATABASE " + pg_dbname_);
        storage::PostgresOptions options;  // the server's defaults: 8 connections, sync commit
        options.host = pg_url_->host;
        options.port = pg_url_->port;
        options.user = pg_url_->user;
        options.password = pg_url_->password;
        options.dbname = pg_dbname_;
        options.application_name = "myelin-bench";
        const char* sync = std::getenv("MYELIN_BENCH_PG_SYNCHRONOUS_COMMIT");
        if (sync != nullptr && std::string(sync) == "off") options.synchronous_commit = false;
        auto db = storage::open_postgres(options);
        if (!db) throw std::runtime_error("open_postgres: " + db.error().message);
        db_ = std::move(*db);
    }

    void open_sqlite_db() {
        const char* base = std::getenv("MYELIN_BENCH_DIR");
        std::filesystem::path parent = base != nullptr && *base != '\0'
                                           ? std::filesystem::path(base)
                                           : std::filesystem::temp_directory_path();
        std::string templ = (parent / "myelin-storage-bench-XXXXXX").string();
        if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = templ;

        storage::SqliteOptions options;  // the server's defaults: FULL, max_batch 64, 2 readers
        options.on_commit = [this](std::size_t jobs) {
            commits_.fetch_add(1, std::memory_order_relaxed);
            jobs_.fetch_add(jobs, std::memory_order_relaxed);
        };
        auto db = storage::open_sqlite((dir_ / "bench.db").string(), options);
        if (!db) throw std::runtime_error("open_sqlite: " + db.error().message);
        db_ = std::move(*db);
    }

    void setup() {
        auto user = storage::write_sync<bool>(*db_, [](storage::WriteTxn& txn) {
            storage::UserRecord u;
            u.user_id = "@bench:localhost";
            u.created_ts = now_ms();
            return txn.insert_user(u);
        });
        if (!user) throw std::runtime_error("insert_user: " + user.error().message);

        // The size of a real sealed successor pair.
        std::string old = auth::generate_token(auth::TokenKind::kRefresh);
        auth::TokenPair pair{auth::generate_token(auth::TokenKind::kAccess),
                             auth::generate_token(auth::TokenKind::kRefresh), now_ms()};
        blob_size_ = sealer_.seal(old, hasher_.hash(old), pair).size();
    }

    std::filesystem::path dir_;                  // SQLite
    std::optional<myelin::PostgresUrl> pg_url_;  // PostgreSQL: the cluster
    std::string pg_dbname_;                      // and the bench's own database on it
    auth::ServerSecret secret_;
    auth::TokenHasher hasher_;
    auth::SuccessorSealer sealer_;
    std::size_t blob_size_ = 0;
    std::unique_ptr<storage::Database> db_;
    std::atomic<std::uint64_t> commits_{0};
    std::atomic<std::uint64_t> jobs_{0};
    std::atomic<std::uint64_t> attempts_{0};
    std::atomic<std::uint64_t> gave_up_{0};
};

// One benchmark thread's session and the refresh token it holds now.
struct Chain {
    std::mt19937_64 rng;
    std::int64_t session_id = 0;
    storage::TokenHash refresh_hash{};
    std::string refresh_token;  // the raw token (crypto variant only)
    std::vector<std::uint8_t> blob;

    storage::TokenHash random_hash() {
        storage::TokenHash h;
        for (std::size_t i = 0; i < h.size(); i += 8) {
            std::uint64_t v = rng();
            for (std::size_t j = 0; j < 8; ++j) h[i + j] = static_cast<std::uint8_t>(v >> (8 * j));
        }
        return h;
    }
};

std::atomic<std::uint64_t> g_device_counter{0};

// Signs in: a new session with an access and a refresh token. With `age` > 0 the session looks
// as if it had been refreshed `age` times already: it starts at generation `age` and holds the
// `age` rotated-out refresh tokens that the server keeps (to recognise their reuse).
Result<void> start_chain(BenchStore& store, Chain& chain, bool crypto, std::int64_t age) {
    chain.rng.seed(std::random_device{}());
    chain.blob.resize(store.blob_size());
    for (auto& b : chain.blob) b = static_cast<std::uint8_t>(chain.rng());
    if (crypto) {
        chain.refresh_token = auth::generate_token(auth::TokenKind::kRefresh);
        chain.refresh_hash = store.hasher().hash(chain.refresh_token);
    } else {
        chain.refresh_hash = chain.random_hash();
    }
    const std::string device = "BENCH" + std::to_string(g_device_counter.fetch_add(1));
    storage::TokenHash access_hash = chain.random_hash();
    auto id = storage::write_sync<std::int64_t>(
        store.db(), [&](storage::WriteTxn& txn) -> Result<std::int64_t> {
            const std::int64_t now = now_ms();
            storage::SessionRecord s;
            s.user_id = "@bench:localhost";
            s.device_id = device;
            s.refreshable = true;
            s.created_ts = now;
            s.current_generation = age;
            s.used_generation = age;
            auto sid = txn.insert_session(s);
            if (!sid) return sid.error();
            for (std::int64_t g = 0; g < age; ++g) {
                storage::RefreshTokenRecord old;
                old.token_hash = chain.random_hash();
                old.session_id = *sid;
                old.generation = g;
                old.issued_ts = now;
                old.expires_ts = now + kIdleTimeoutMs;
                if (auto r = txn.insert_refresh_token(old); !r) return r.error();
            }
            storage::AccessTokenRecord at;
            at.token_hash = access_hash;
            at.session_id = *sid;
            at.generation = age;
            at.issued_ts = now;
            at.expires_ts = now + kAccessLifetimeMs;
            if (auto r = txn.insert_access_token(at); !r) return r.error();
            storage::RefreshTokenRecord rt;
            rt.token_hash = chain.refresh_hash;
            rt.session_id = *sid;
            rt.generation = age;
            rt.issued_ts = now;
            rt.expires_ts = now + kIdleTimeoutMs;
            if (auto r = txn.insert_refresh_token(rt); !r) return r.error();
            return *sid;
        });
    if (!id) return id.error();
    chain.session_id = *id;
    return {};
}

// One durable rotation of the chain's refresh token (what refresh_in_txn writes).
Result<void> rotate(BenchStore& store, Chain& chain, bool crypto, Form form) {
    storage::TokenHash next_refresh_hash{};
    storage::TokenHash next_access_hash{};
    std::string next_refresh;
    if (!crypto) {
        next_refresh_hash = chain.random_hash();
        next_access_hash = chain.random_hash();
    }
    auto done = storage::write_sync<bool>(store.db(), [&](storage::WriteTxn& txn) -> Result<bool> {
        store.count_attempt();
        const std::int64_t now = now_ms();
        auto lookup = txn.find_refresh_token(chain.refresh_hash);
        if (!lookup) return lookup.error();
        if (!*lookup) return myelin::errors::internal("benchmark lost its refresh token");
        const auto& s = (*lookup)->session;
        const auto& t = (*lookup)->token;
        if (s.revoked_ts != 0 || t.generation != s.current_generation) {
            return myelin::errors::internal("benchmark chain out of step");
        }
        const std::int64_t g = t.generation;
        const std::int64_t next = g + 1;
        std::vector<std::uint8_t> sealed;
        if (crypto) {
            std::string access = auth::generate_token(auth::TokenKind::kAccess);
            next_refresh = auth::generate_token(auth::TokenKind::kRefresh);
            next_access_hash = store.hasher().hash(access);
            next_refresh_hash = store.hasher().hash(next_refresh);
            sealed = store.sealer().seal(chain.refresh_token, chain.refresh_hash,
                                         {access, next_refresh, now + kAccessLifetimeMs});
        } else {
            sealed = chain.blob;
        }
        storage::SessionRotation rotation;
        rotation.session_id = s.session_id;
        rotation.expected_current = g;
        rotation.new_current = next;
        rotation.new_used = g;
        storage::AccessTokenRecord& at = rotation.access;
        at.token_hash = next_access_hash;
        at.session_id = s.session_id;
        at.generation = next;
        at.issued_ts = now;
        at.expires_ts = now + kAccessLifetimeMs;
        storage::RefreshTokenRecord& rt = rotation.refresh;
        rt.token_hash = next_refresh_hash;
        rt.session_id = s.session_id;
        rt.generation = next;
        rt.issued_ts = now;
        rt.expires_ts = now + kIdleTimeoutMs;
        rotation.old_refresh_hash = chain.refresh_hash;

        if (form == Form::kOneCall) {
            rotation.old_sealed_successor = std::move(sealed);
            auto rotated = txn.rotate_session(rotation);
            if (!rotated) return rotated.error();
            if (!*rotated) return myelin::errors::internal("benchmark compare-and-swap failed");
            return true;
        }
        auto cas = txn.update_session_generations(s.session_id, g, next, g);
        if (!cas) return cas.error();
        if (!*cas) return myelin::errors::internal("benchmark compare-and-swap failed");
        if (auto r = txn.insert_access_token(at); !r) return r.error();
        if (auto r = txn.insert_refresh_token(rt); !r) return r.error();
        if (auto r = txn.wipe_sealed_successors(s.session_id); !r) return r.error();
        if (auto r = txn.set_sealed_successor(chain.refresh_hash, sealed); !r) {
            return r.error();
        }
        return true;
    });
    if (!done) return done.error();
    chain.refresh_hash = next_refresh_hash;
    if (crypto) {
        // The service hashes the presented token on the network thread, before the job.
        chain.refresh_token = std::move(next_refresh);
        chain.refresh_hash = store.hasher().hash(chain.refresh_token);
    }
    return {};
}

// Runs state.iterations() rotations on each thread, spread round robin over `chains` sessions
// of that thread (started `age` rotations old).
void run_rotations(benchmark::State& state, bool crypto, std::int64_t age, int chains,
                   Form form = Form::kStatements, Backend backend = Backend::kSqlite) {
    BenchStore* store = nullptr;
    try {
        store = &BenchStore::get(backend);
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
        for (auto _ : state) {
        }
        return;
    }
    std::vector<Chain> mine(static_cast<std::size_t>(chains));
    for (auto& chain : mine) {
        if (auto started = start_chain(*store, chain, crypto, age); !started) {
            state.SkipWithError(("start_chain: " + started.error().message).c_str());
            for (auto _ : state) {
            }
            return;
        }
    }
    const bool first = state.thread_index() == 0;
    const std::uint64_t commits0 = store->commits();
    const std::uint64_t jobs0 = store->jobs();
    const std::uint64_t attempts0 = store->attempts();
    const std::uint64_t gave_up0 = store->gave_up();
    const double cpu0 = process_cpu_seconds();

    std::size_t next = 0;
    for (auto _ : state) {
        // A job that lost every serialization race (503; nothing was written) is submitted
        // again, as a client would after Retry-After, and counted.
        auto r = rotate(*store, mine[next], crypto, form);
        for (int resubmitted = 0; !r && r.error().status == 503 && resubmitted < 10;
             ++resubmitted) {
            store->count_gave_up();
            r = rotate(*store, mine[next], crypto, form);
        }
        if (!r) {
            state.SkipWithError(("rotate: " + r.error().message).c_str());
            break;
        }
        if (++next == mine.size()) next = 0;
    }

    state.SetItemsProcessed(state.iterations());
    if (first) {
        const double rotations = static_cast<double>(state.iterations()) * state.threads();
        const double commits = static_cast<double>(store->commits() - commits0);
        const double jobs = static_cast<double>(store->jobs() - jobs0);
        if (backend == Backend::kSqlite) {
            state.counters["jobs_per_commit"] = commits > 0 ? jobs / commits : 0.0;
        }
        // Serialization races lost (job bodies run again), and jobs that lost them all.
        state.counters["lost_races"] =
            static_cast<double>(store->attempts() - attempts0) - rotations;
        state.counters["gave_up"] = static_cast<double>(store->gave_up() - gave_up0);
        state.counters["cpu_us_per_rotation"] =
            rotations > 0 ? (process_cpu_seconds() - cpu0) * 1e6 / rotations : 0.0;
        // Rotations each session went through in this run (its generation at the end, less
        // `age`): the cost of a rotation grows with it (see BM_StorageRotationAged).
        state.counters["rotations_per_session"] = static_cast<double>(state.iterations()) / chains;
    }
}

void BM_StorageRotation(benchmark::State& state) { run_rotations(state, false, 0, 1); }
void BM_StorageRotationOneCall(benchmark::State& state) {
    run_rotations(state, false, 0, 1, Form::kOneCall);
}
void BM_StorageRotationWithCrypto(benchmark::State& state) { run_rotations(state, true, 0, 1); }
// Sessions already refreshed state.range(0) times.
void BM_StorageRotationAged(benchmark::State& state) {
    run_rotations(state, false, state.range(0), 1);
}

// Fixed iteration counts (rotations per thread, hence per session), so that every run does the
// same work whatever the disk's speed: the rate depends on how long the sessions' histories get.
BENCHMARK(BM_StorageRotation)->UseRealTime()->Iterations(300)->Threads(1);
BENCHMARK(BM_StorageRotation)->UseRealTime()->Iterations(300)->Threads(8);
BENCHMARK(BM_StorageRotation)->UseRealTime()->Iterations(100)->Threads(64);
BENCHMARK(BM_StorageRotationOneCall)->UseRealTime()->Iterations(300)->Threads(1);
BENCHMARK(BM_StorageRotationOneCall)->UseRealTime()->Iterations(100)->Threads(64);
BENCHMARK(BM_StorageRotationWithCrypto)->UseRealTime()->Iterations(100)->Threads(64);
BENCHMARK(BM_StorageRotationAged)->UseRealTime()->Arg(1000)->Iterations(100)->Threads(64);

// The ceilings that bench/run_bench.py pairs with the server's refresh runs (SQLite, and
// PostgreSQL when MYELIN_TEST_POSTGRES_URL is set): registered only when
// MYELIN_BENCH_ROTATIONS_PER_SESSION is set. MYELIN_BENCH_SESSIONS (default 256) fresh sessions
// spread over 64 threads (as over wrk's 64 connections), each rotated exactly
// MYELIN_BENCH_ROTATIONS_PER_SESSION times: the same amount of work per session as the server
// did, so that both pay the same per-session history.
[[maybe_unused]] const int kMatchedRegistered = [] {
    const char* per_session = std::getenv("MYELIN_BENCH_ROTATIONS_PER_SESSION");
    if (per_session == nullptr || std::atoi(per_session) <= 0) return 0;
    const char* sessions_env = std::getenv("MYELIN_BENCH_SESSIONS");
    const int threads = 64;
    const int sessions = std::max(threads, sessions_env ? std::atoi(sessions_env) : 256);
    const int chains = (sessions + threads - 1) / threads;
    const auto iterations = static_cast<benchmark::IterationCount>(chains) * std::atoi(per_session);
    benchmark::RegisterBenchmark(
        "BM_StorageRotationMatched",
        [chains](benchmark::State& state) { run_rotations(state, false, 0, chains); })
        ->UseRealTime()
        ->Iterations(iterations)
        ->Threads(threads);
    // The same on the PostgreSQL cluster of MYELIN_TEST_POSTGRES_URL (the server's pool of 8
    // connections, synchronous commit, the separate statements the service writes).
    const char* pg_url = std::getenv("MYELIN_TEST_POSTGRES_URL");
    if (pg_url != nullptr && *pg_url != '\0') {
        benchmark::RegisterBenchmark("BM_PgRotationMatched",
                                     [chains](benchmark::State& state) {
                                         run_rotations(state, false, 0, chains, Form::kStatements,
                                                       Backend::kPostgres);
                                     })
            ->UseRealTime()
            ->Iterations(iterations)
            ->Threads(threads);
    }
    return 1;
}();

// The PostgreSQL pairs (see the top of this file): both forms back to back at each thread
// count, the whole set repeated MYELIN_BENCH_PG_ROUNDS times. Fixed iteration counts per thread
// (each thread rotates one fresh session), so that both forms do the same work.
[[maybe_unused]] const int kPostgresRegistered = [] {
    const char* url = std::getenv("MYELIN_TEST_POSTGRES_URL");
    if (url == nullptr || *url == '\0') return 0;
    const char* rounds_env = std::getenv("MYELIN_BENCH_PG_ROUNDS");
    const int rounds = std::max(1, rounds_env != nullptr ? std::atoi(rounds_env) : 3);
    struct Case {
        int threads;
        benchmark::IterationCount iterations;  // per thread
    };
    const Case cases[] = {{1, 1000}, {8, 400}, {64, 60}};
    for (int round = 0; round < rounds; ++round) {
        for (const auto& c : cases) {
            // The order alternates between rounds, so that neither form always runs on the
            // tables the other has just grown (or while autovacuum handles them).
            const Form first = round % 2 == 0 ? Form::kStatements : Form::kOneCall;
            const Form second = round % 2 == 0 ? Form::kOneCall : Form::kStatements;
            for (Form form : {first, second}) {
                const char* name = form == Form::kOneCall ? "BM_PgRotation/one_statement"
                                                          : "BM_PgRotation/statements";
                benchmark::RegisterBenchmark(name,
                                             [form](benchmark::State& state) {
                                                 run_rotations(state, false, 0, 1, form,
                                                               Backend::kPostgres);
                                             })
                    ->UseRealTime()
                    ->Iterations(c.iterations)
                    ->Threads(c.threads);
            }
        }
    }
    return 1;
}();

}  // namespace
