#include "myelin/storage/postgres/pg_database.hpp"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "myelin/core/log.hpp"
#include "myelin/storage/job_guard.hpp"
#include "myelin/storage/postgres/pg_connection.hpp"
#include "myelin/storage/postgres/pg_migrations.hpp"
#include "myelin/storage/postgres/pg_rate_limit_exchange.hpp"
#include "myelin/storage/postgres/pg_session_feed.hpp"
#include "myelin/storage/postgres/pg_txn.hpp"
#include "myelin/storage/postgres/pg_wake_channel.hpp"

namespace myelin::storage {

namespace {

using pg::Connection;
using Clock = std::chrono::steady_clock;

constexpr const char* kBeginWrite = "BEGIN ISOLATION LEVEL SERIALIZABLE";
constexpr const char* kBeginRead = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
constexpr const char* kCommit = "COMMIT";
constexpr const char* kRollback = "ROLLBACK";
// After a failed reconnect, a worker fails jobs at once for this long instead of making each of
// them wait for another connect attempt.
constexpr std::chrono::milliseconds kReconnectBackoff{1000};

// The session-level advisory lock of each SharedCounter bit (bit i -> entry i). The keys are
// myelin's own ("myelin" in ASCII, 0x6d79656c696e, then the bit) so that they cannot meet another
// program's.
constexpr std::array<const char*, 3> kSharedCounterLocks = {
    "SELECT pg_advisory_lock(7888447738615824384)",
    "SELECT pg_advisory_lock(7888447738615824385)",
    "SELECT pg_advisory_lock(7888447738615824386)",
};
constexpr const char* kUnlockSharedCounters = "SELECT pg_advisory_unlock_all()";
static_assert(kAllSharedCounters == (1u << kSharedCounterLocks.size()) - 1,
              "one advisory lock per shared counter");

Error closed_error() { return errors::unavailable("The database is closed", 5); }

bool is_serialization_failure(std::string_view sqlstate) {
    return sqlstate == pg::kSerializationFailure || sqlstate == pg::kDeadlockDetected;
}

// One queued job: a read or a write, and when it stops waiting for a connection.
struct Task {
    ReadJob read;
    WriteJob write;
    bool is_write = false;
    Clock::time_point deadline;
};

// One worker's connection, reopened when it breaks.
struct Slot {
    std::unique_ptr<Connection> conn;
    Clock::time_point last_failed_connect{};
};

class PgDatabase final : public Database {
public:
    PgDatabase(PostgresOptions options, std::vector<std::unique_ptr<Connection>> connections)
        : options_(std::move(options)), settings_(connection_settings(options_)) {
        for (auto& conn : connections) slots_.push_back(Slot{std::move(conn), {}});
    }

    ~PgDatabase() override { close(); }

    PgDatabase(const PgDatabase&) = delete;
    PgDatabase& operator=(const PgDatabase&) = delete;

    // Starts the workers and the reaper. Throws std::system_error if a thread cannot be created
    // (open_postgres catches it and closes the database).
    void start() {
        std::lock_guard close_lock(close_mu_);
        for (auto& slot : slots_) {
            workers_.emplace_back([this, s = &slot] { worker_main(*s); });
            own_threads_.push_back(workers_.back().get_id());
        }
        reaper_ = std::thread([this] { reaper_main(); });
        own_threads_.push_back(reaper_.get_id());
    }

    Result<std::unique_ptr<RateLimitExchange>> open_rate_limit_exchange() override {
        auto conn = Connection::open(settings_);
        if (!conn) return conn.error();
        return std::unique_ptr<RateLimitExchange>(
            std::make_unique<pg::PgRateLimitExchange>(settings_, std::move(*conn)));
    }

    std::unique_ptr<SessionFeed> open_session_feed() override {
        return std::make_unique<pg::PgSessionFeed>(settings_);
    }

    std::unique_ptr<WakeChannel> open_wake_channel() override {
        return std::make_unique<pg::PgWakeChannel>(settings_);
    }

    void post_read(ReadJob job) override {
        Task task;
        task.read = std::move(job);
        if (!enqueue(task) && task.read) task.read(nullptr);
    }

    void post_write(WriteJob job) override {
        Task task;
        task.is_write = true;
        task.write = std::move(job);
        if (!enqueue(task) && task.write.on_committed) {
            task.write.on_committed(Result<void>(closed_error()));
        }
    }

    // Called from one of our own threads (by a job), it can only stop intake; the threads drain
    // the queue and exit, and a later close() (at the latest the destructor's) joins them.
    void close() override {
        {
            std::lock_guard lock(mu_);
            accepting_ = false;
        }
        cv_.notify_all();
        if (std::find(own_threads_.begin(), own_threads_.end(), std::this_thread::get_id()) !=
            own_threads_.end()) {
            return;
        }
        std::lock_guard close_lock(close_mu_);
        if (closed_) return;
        for (auto& t : workers_) {
            if (t.joinable()) t.join();
        }
        {
            std::lock_guard lock(mu_);
            workers_done_ = true;
        }
        cv_.notify_all();
        if (reaper_.joinable()) reaper_.join();
        slots_.clear();
        closed_ = true;
        myelin::log::app()->info("postgresql: database closed");
    }

    std::string backend_name() const override { return "postgresql"; }

private:
    // Queues `task` (moving from it) unless closed; false (task untouched) when closed.
    bool enqueue(Task& task) {
        {
            std::lock_guard lock(mu_);
            if (!accepting_) return false;
            task.deadline = Clock::now() + options_.pool_timeout;
            queue_.push_back(std::move(task));
        }
        cv_.notify_all();
        return true;
    }

    Error pool_timeout_error() const {
        return errors::unavailable(
            fmt::format("The database is busy: all {} connections stayed in use for {} ms",
                        options_.pool_size, options_.pool_timeout.count()),
            5);
    }

    // Hands a job that never got a connection its failure.
    static void fail_task(Task& task, const Error& error) {
        if (task.is_write) {
            deliver_write_result(task.write, Result<void>(error), "postgresql");
        } else {
            run_read_job(task.read, nullptr, "postgresql");
        }
    }

    // Fails the jobs that waited longer than pool_timeout, so that their callers get an answer
    // even while every connection is stuck.
    void reaper_main() {
        std::unique_lock lock(mu_);
        for (;;) {
            if (workers_done_) return;
            if (queue_.empty()) {
                cv_.wait(lock);
                continue;
            }
            const auto deadline = queue_.front().deadline;
            if (Clock::now() < deadline) {
                cv_.wait_until(lock, deadline);
                continue;
            }
            std::vector<Task> expired;
            while (!queue_.empty() && queue_.front().deadline <= Clock::now()) {
                expired.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            lock.unlock();
            const Error error = pool_timeout_error();
            myelin::log::app()->warn("postgresql: {} jobs timed out waiting for a connection",
                                     expired.size());
            for (auto& task : expired) fail_task(task, error);
            lock.lock();
        }
    }

    void worker_main(Slot& slot) {
        std::minstd_rand random(
            static_cast<unsigned>(std::hash<std::thread::id>{}(std::this_thread::get_id())));
        for (;;) {
            Task task;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [this] { return !queue_.empty() || !accepting_; });
                if (queue_.empty()) return;  // closed and drained
                task = std::move(queue_.front());
                queue_.pop_front();
            }
            if (task.is_write) {
                run_write(slot, task.write, random);
            } else if (task.read) {
                run_read(slot, task.read);
            }
        }
    }

    // A usable connection in `slot`, reopened if it broke.
    Result<Connection*> connection(Slot& slot) {
        if (slot.conn && !slot.conn->broken()) return slot.conn.get();
        slot.conn.reset();
        if (Clock::now() - slot.last_failed_connect < kReconnectBackoff) {
            return errors::unavailable("The database is unavailable: cannot connect to PostgreSQL",
                                       5);
        }
        auto opened = Connection::open(settings_);
        if (!opened) {
            slot.last_failed_connect = Clock::now();
            // Connection::open logged who and where; the job's caller (a client's request)
            // learns only that the database is unreachable.
            return errors::unavailable("The database is unavailable: cannot connect to PostgreSQL",
                                       5);
        }
        myelin::log::app()->info("postgresql: reconnected");
        slot.conn = std::move(*opened);
        return slot.conn.get();
    }

    // Begins a transaction with `begin`. A connection found dead at BEGIN (e.g. closed by the
    // server while idle) is reopened once: nothing of the job has run yet.
    Result<Connection*> begin(Slot& slot, const char* begin_sql) {
        for (int attempt = 0;; ++attempt) {
            auto conn = connection(slot);
            if (!conn) return conn.error();
            (*conn)->clear_failure();
            auto begun = (*conn)->exec(begin_sql, "starting a transaction");
            if (begun) return *conn;
            if (attempt > 0 || !(*conn)->broken()) return begun.error();
        }
    }

    static void end_transaction(Connection& conn, const char* sql) {
        if (conn.broken()) return;
        if (auto ended = conn.exec(sql, "ending a transaction"); !ended) {
            myelin::log::app()->error(
                "postgresql: ending a transaction failed; the connection "
                "will be checked before its next job");
        }
    }

    void run_read(Slot& slot, ReadJob& job) {
        auto conn = begin(slot, kBeginRead);
        if (conn) {
            pg::PgReadTxn txn(**conn);
            run_read_job(job, &txn, "postgresql");
        } else {
            run_read_job(job, nullptr, "postgresql");
        }
        // COMMIT also ends a transaction that a failed statement aborted.
        if (conn) end_transaction(**conn, kCommit);
    }

    // Takes, on the slot's connection and in ascending order, the session-level advisory lock
    // of every counter in `counters` (waiting for the jobs of any process that hold one). A
    // SERIALIZABLE transaction's snapshot is taken at its first statement, so the locks must be
    // held before BEGIN: the transaction then sees the last holder's commit and its counter
    // bump cannot lose a race. Error (503) when the connection fails; the locks taken are then
    // released with it.
    Result<void> lock_counters(Slot& slot, SharedCounters counters) {
        for (unsigned bit = 0; bit < kSharedCounterLocks.size(); ++bit) {
            if ((counters & (1u << bit)) == 0) continue;
            auto conn = connection(slot);
            if (!conn) return conn.error();
            (*conn)->clear_failure();
            if (auto locked = (*conn)->exec(kSharedCounterLocks[bit], "waiting for a stream");
                !locked) {
                return locked.error();
            }
        }
        return {};
    }

    // Releases every advisory lock the slot's connection holds (none if it broke: the server
    // released them with the session).
    static void unlock_counters(Slot& slot) {
        if (!slot.conn || slot.conn->broken()) return;
        slot.conn->clear_failure();
        if (auto unlocked = slot.conn->exec(kUnlockSharedCounters, "releasing a stream");
            !unlocked) {
            myelin::log::app()->error("postgresql: releasing the stream locks failed");
        }
    }

    // One attempt: [locks,] BEGIN, the body, COMMIT[, unlock]. Sets `retry` when the attempt
    // lost a serialization race (and was rolled back) and may be run again.
    Result<void> attempt_write(Slot& slot, WriteJob& job, SharedCounters locks, bool& retry) {
        retry = false;
        if (locks == 0) return attempt_write_body(slot, job, retry);
        Result<void> outcome = lock_counters(slot, locks);
        if (outcome) outcome = attempt_write_body(slot, job, retry);
        unlock_counters(slot);
        return outcome;
    }

    Result<void> attempt_write_body(Slot& slot, WriteJob& job, bool& retry) {
        auto conn = begin(slot, kBeginWrite);
        if (!conn) return conn.error();
        Connection& c = **conn;
        pg::PgWriteTxn txn(c);
        Result<void> outcome = run_write_body(job, txn, "postgresql");
        if (c.failed()) {
            // A statement failed, so PostgreSQL aborted the transaction whatever the job
            // returned: nothing of it can commit.
            end_transaction(c, kRollback);
            retry = is_serialization_failure(c.first_failure());
            return outcome ? Result<void>(c.first_error()) : outcome;
        }
        if (!outcome) {
            end_transaction(c, kRollback);
            return outcome;
        }
        auto committed = c.exec(kCommit, "the commit");
        if (!committed) retry = is_serialization_failure(c.first_failure());
        return committed;
    }

    void run_write(Slot& slot, WriteJob& job, std::minstd_rand& random) {
        Result<void> result;
        for (int attempt = 1;; ++attempt) {
            bool retry = false;
            // A job that lost a race goes through every shared counter's queue from then on:
            // if the race was over a counter it did not name, the retry cannot lose it again.
            const SharedCounters locks = attempt == 1 ? job.counters : kAllSharedCounters;
            result = attempt_write(slot, job, locks, retry);
            if (!retry) break;
            if (attempt >= options_.max_attempts) {
                myelin::log::app()->warn(
                    "postgresql: a write job lost {} serialization races in a row; giving up",
                    attempt);
                break;
            }
            // Back off a little (randomised) so that the racing jobs do not collide again.
            const int cap = std::min(50, 1 << std::min(attempt, 6));
            std::this_thread::sleep_for(
                std::chrono::milliseconds(std::uniform_int_distribution<int>(0, cap)(random)));
        }
        deliver_write_result(job, result, "postgresql");
    }

    const PostgresOptions options_;
    const pg::ConnectionSettings settings_;
    std::vector<Slot> slots_;  // one per worker; slot i is used by worker i only

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Task> queue_;     // guarded by mu_
    bool accepting_ = true;      // guarded by mu_
    bool workers_done_ = false;  // guarded by mu_

    std::mutex close_mu_;  // serialises start() and close()
    std::vector<std::thread> workers_;
    std::thread reaper_;
    // Set in start() before any job can run, read-only afterwards.
    std::vector<std::thread::id> own_threads_;
    bool closed_ = false;  // guarded by close_mu_
};

}  // namespace

pg::ConnectionSettings connection_settings(const PostgresOptions& o) {
    pg::ConnectionSettings s;
    s.host = o.host;
    s.port = o.port;
    s.user = o.user;
    s.password = o.password;
    s.dbname = o.dbname;
    s.application_name = o.application_name;
    s.synchronous_commit = o.synchronous_commit;
    s.connect_timeout_s = o.connect_timeout_s;
    return s;
}

int postgres_schema_version() { return pg::latest_schema_version(); }

Result<std::unique_ptr<Database>> open_postgres(const PostgresOptions& options) {
    if (options.pool_size < 1 || options.max_attempts < 1 || options.pool_timeout.count() <= 0) {
        return errors::internal(fmt::format(
            "invalid PostgreSQL options: pool_size ({}) and max_attempts ({}) must be at least 1 "
            "and pool_timeout ({} ms) positive",
            options.pool_size, options.max_attempts, options.pool_timeout.count()));
    }
    const pg::ConnectionSettings settings = connection_settings(options);
    std::vector<std::unique_ptr<Connection>> connections;
    auto first = Connection::open(settings);
    if (!first) return first.error();
    auto version = pg::apply_migrations(**first);
    if (!version) return version.error();
    connections.push_back(std::move(*first));
    for (int i = 1; i < options.pool_size; ++i) {
        auto conn = Connection::open(settings);
        if (!conn) return conn.error();
        connections.push_back(std::move(*conn));
    }

    auto db = std::make_unique<PgDatabase>(options, std::move(connections));
    try {
        db->start();
    } catch (const std::system_error& e) {
        db->close();
        return errors::internal(fmt::format("cannot start the database threads: {}", e.what()));
    }
    myelin::log::app()->info(
        "postgresql: opened postgresql://{}@{}:{}/{} (schema version {}, {} connections, "
        "synchronous_commit={})",
        options.user, options.host, options.port, options.dbname, *version, options.pool_size,
        options.synchronous_commit ? "on" : "off");
    return std::unique_ptr<Database>(std::move(db));
}

}  // namespace myelin::storage
