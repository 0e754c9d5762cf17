#include "myelin/storage/sqlite/sqlite_database.hpp"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <sqlite3.h>

#include "myelin/core/log.hpp"
#include "myelin/storage/job_guard.hpp"
#include "myelin/storage/sqlite/connection.hpp"
#include "myelin/storage/sqlite/migrations.hpp"
#include "myelin/storage/sqlite/sqlite_txn.hpp"

namespace myelin::storage {

namespace {

using sqlite::Connection;

// How long the write queue must stay empty before the writer checkpoints the WAL into the
// database file. Checkpointing when idle keeps the WAL short, so that SQLite's own
// auto-checkpoint (which runs inside a commit and adds to its latency) rarely has work to do.
constexpr std::chrono::milliseconds kIdleCheckpointDelay{200};

constexpr std::string_view kBeginImmediate = "BEGIN IMMEDIATE";
constexpr std::string_view kBeginRead = "BEGIN";
constexpr std::string_view kCommit = "COMMIT";
constexpr std::string_view kRollback = "ROLLBACK";
constexpr std::string_view kSavepoint = "SAVEPOINT write_job";
constexpr std::string_view kRollbackToSavepoint = "ROLLBACK TO write_job";
constexpr std::string_view kReleaseSavepoint = "RELEASE write_job";

Error closed_error() { return errors::unavailable("The database is closed", 5); }

class SqliteDatabase final : public Database {
public:
    SqliteDatabase(SqliteOptions options, std::unique_ptr<Connection> writer,
                   std::vector<std::unique_ptr<Connection>> readers)
        : options_(std::move(options)),
          writer_conn_(std::move(writer)),
          reader_conns_(std::move(readers)),
          write_txn_(*writer_conn_) {}

    ~SqliteDatabase() override { close(); }

    SqliteDatabase(const SqliteDatabase&) = delete;
    SqliteDatabase& operator=(const SqliteDatabase&) = delete;

    // Starts the writer and reader threads. Throws std::system_error if a thread cannot be
    // created (open_sqlite catches it and closes the database).
    void start() {
        std::lock_guard close_lock(close_mu_);
        writer_thread_ = std::thread([this] { writer_main(); });
        own_threads_.push_back(writer_thread_.get_id());
        for (auto& conn : reader_conns_) {
            reader_threads_.emplace_back([this, c = conn.get()] { reader_main(*c); });
            own_threads_.push_back(reader_threads_.back().get_id());
        }
    }

    void post_read(ReadJob job) override {
        {
            std::lock_guard lock(read_mu_);
            if (read_accepting_) {
                read_queue_.push_back(std::move(job));
                read_cv_.notify_one();
                return;
            }
        }
        if (job) job(nullptr);
    }

    void post_write(WriteJob job) override {
        {
            std::lock_guard lock(write_mu_);
            if (write_accepting_) {
                write_queue_.push_back(std::move(job));
                write_cv_.notify_one();
                return;
            }
        }
        if (job.on_committed) job.on_committed(Result<void>(closed_error()));
    }

    // Called from one of our own threads (by a job), it can only stop intake: the thread cannot
    // join itself. The threads then drain their queues and exit; a later close() (at the latest
    // the destructor's) joins them.
    void close() override {
        stop_accepting();
        if (std::find(own_threads_.begin(), own_threads_.end(), std::this_thread::get_id()) !=
            own_threads_.end()) {
            return;
        }
        std::lock_guard close_lock(close_mu_);
        if (closed_) return;
        if (writer_thread_.joinable()) writer_thread_.join();
        for (auto& t : reader_threads_) {
            if (t.joinable()) t.join();
        }
        // Readers first: the writer's connection, closed last, checkpoints and removes the WAL.
        reader_conns_.clear();
        writer_conn_.reset();
        closed_ = true;
        myelin::log::app()->info("sqlite: database closed");
    }

    std::string backend_name() const override { return "sqlite"; }

private:
    void stop_accepting() {
        {
            std::lock_guard lock(write_mu_);
            write_accepting_ = false;
        }
        write_cv_.notify_all();
        {
            std::lock_guard lock(read_mu_);
            read_accepting_ = false;
        }
        read_cv_.notify_all();
    }

    // ---- Writer ---------------------------------------------------------------------------

    void writer_main() {
        std::vector<WriteJob> batch;
        batch.reserve(static_cast<std::size_t>(options_.max_batch));
        bool wal_dirty = false;  // committed since the last checkpoint
        for (;;) {
            {
                std::unique_lock lock(write_mu_);
                auto has_work = [this] { return !write_queue_.empty() || !write_accepting_; };
                if (wal_dirty && !has_work() &&
                    !write_cv_.wait_for(lock, kIdleCheckpointDelay, has_work)) {
                    lock.unlock();
                    checkpoint();
                    wal_dirty = false;
                    continue;
                }
                write_cv_.wait(lock, has_work);
                if (write_queue_.empty()) return;  // closed and drained
                const std::size_t n =
                    std::min(write_queue_.size(), static_cast<std::size_t>(options_.max_batch));
                for (std::size_t i = 0; i < n; ++i) {
                    batch.push_back(std::move(write_queue_.front()));
                    write_queue_.pop_front();
                }
            }
            if (run_batch(batch)) wal_dirty = true;
            batch.clear();
        }
    }

    // Runs `batch` in one transaction, each job inside its own savepoint, commits once and then
    // hands every job its result. When the transaction cannot begin (the database is locked by
    // another process past the busy timeout, ...), the jobs queued by then get the same error
    // too. Returns true if something was committed.
    bool run_batch(std::vector<WriteJob>& batch) {
        Connection& conn = *writer_conn_;
        std::vector<Result<void>> results(batch.size());
        std::vector<std::size_t> pending;  // jobs whose changes wait in the open transaction
        auto fail_pending = [&](const Error& error) {
            for (std::size_t i : pending) results[i] = error;
            pending.clear();
        };

        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (!conn.in_transaction()) {
                if (auto begin = conn.run(kBeginImmediate, "starting a write transaction");
                    !begin) {
                    // Likely to fail again at once (or after another busy timeout): give the
                    // rest of the batch the same answer rather than retrying job by job, and
                    // the jobs that queued meanwhile too. Those have waited for most of the
                    // busy timeout already; a batch of their own would make them wait for
                    // another whole one before the same answer.
                    take_queued_jobs(batch);
                    results.resize(batch.size());
                    for (std::size_t j = i; j < batch.size(); ++j) results[j] = begin.error();
                    break;
                }
            }
            if (auto savepoint = conn.run(kSavepoint, "starting a write job"); !savepoint) {
                results[i] = savepoint.error();
                abandon_transaction(conn);
                fail_pending(savepoint.error());
                continue;
            }
            Result<void> outcome = run_job(batch[i]);
            if (!conn.in_transaction()) {
                // SQLite rolled the whole transaction back on its own (an I/O error, a full
                // disk): the earlier jobs of this transaction are gone too.
                Error lost = errors::unavailable(
                    "The database is unavailable: a storage error rolled back the transaction", 5);
                myelin::log::app()->error("sqlite: {} write jobs were rolled back by SQLite",
                                          pending.size() + 1);
                results[i] = outcome ? lost : outcome.error();
                fail_pending(lost);
                continue;
            }
            if (outcome) {
                auto released = conn.run(kReleaseSavepoint, "finishing a write job");
                if (released) {
                    pending.push_back(i);
                    continue;
                }
                outcome = released.error();
            }
            // Undo this job's changes only; the others in the transaction stay.
            results[i] = outcome.error();
            auto undone = conn.run(kRollbackToSavepoint, "rolling back a write job");
            if (undone) undone = conn.run(kReleaseSavepoint, "rolling back a write job");
            if (!undone) {
                abandon_transaction(conn);
                fail_pending(undone.error());
            }
        }

        bool committed = false;
        if (conn.in_transaction()) {
            if (pending.empty()) {
                abandon_transaction(conn);  // every job failed: nothing to make durable
            } else if (auto commit = conn.run(kCommit, "the commit"); commit) {
                committed = true;
                notify_commit(pending.size());
                pending.clear();
            } else {
                myelin::log::app()->error(
                    "sqlite: a commit of {} write jobs failed; they are rolled back and the "
                    "writer carries on",
                    pending.size());
                abandon_transaction(conn);
                fail_pending(commit.error());
            }
        }

        for (std::size_t i = 0; i < batch.size(); ++i) {
            deliver_write_result(batch[i], results[i], "sqlite");
        }
        return committed;
    }

    // Moves every queued write job to the end of `batch`.
    void take_queued_jobs(std::vector<WriteJob>& batch) {
        std::lock_guard lock(write_mu_);
        while (!write_queue_.empty()) {
            batch.push_back(std::move(write_queue_.front()));
            write_queue_.pop_front();
        }
    }

    // Runs one job's body; an exception becomes a 500 for that job only.
    Result<void> run_job(WriteJob& job) { return run_write_body(job, write_txn_, "sqlite"); }

    // Rolls back whatever transaction is open (SQLite may already have done so).
    static void abandon_transaction(Connection& conn) {
        if (!conn.in_transaction()) return;
        if (auto rolled_back = conn.run(kRollback, "rolling back a write transaction");
            !rolled_back) {
            // Nothing more to do here: the next batch's BEGIN reports the state to its jobs.
            myelin::log::app()->error("sqlite: ROLLBACK failed; the next batch will retry");
        }
    }

    void notify_commit(std::size_t jobs) {
        if (!options_.on_commit) return;
        try {
            options_.on_commit(jobs);
        } catch (...) {
            myelin::log::app()->error("sqlite: the on_commit observer threw");
        }
    }

    // Copies committed WAL frames into the database file without waiting for readers.
    void checkpoint() {
        int wal_frames = 0;
        int copied = 0;
        const int rc = sqlite3_wal_checkpoint_v2(writer_conn_->handle(), nullptr,
                                                 SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied);
        if (rc != SQLITE_OK) {
            myelin::log::app()->warn("sqlite: idle WAL checkpoint failed: {}",
                                     sqlite3_errmsg(writer_conn_->handle()));
            return;
        }
        myelin::log::app()->debug("sqlite: idle WAL checkpoint copied {} of {} frames", copied,
                                  wal_frames);
    }

    // ---- Readers --------------------------------------------------------------------------

    void reader_main(Connection& conn) {
        sqlite::SqliteReadTxn txn(conn);
        for (;;) {
            ReadJob job;
            {
                std::unique_lock lock(read_mu_);
                read_cv_.wait(lock, [this] { return !read_queue_.empty() || !read_accepting_; });
                if (read_queue_.empty()) return;  // closed and drained
                job = std::move(read_queue_.front());
                read_queue_.pop_front();
            }
            if (job) run_read(conn, txn, job);
        }
    }

    // Runs `job` inside a deferred transaction: one snapshot for all of its queries.
    static void run_read(Connection& conn, ReadTxn& txn, ReadJob& job) {
        auto begin = conn.run(kBeginRead, "starting a read transaction");
        run_read_job(job, begin ? &txn : nullptr, "sqlite");
        if (conn.in_transaction() && !conn.run(kCommit, "ending a read transaction")) {
            if (conn.in_transaction()) (void)conn.run(kRollback, "ending a read transaction");
        }
    }

    const SqliteOptions options_;
    std::unique_ptr<Connection> writer_conn_;                // used by the writer thread only
    std::vector<std::unique_ptr<Connection>> reader_conns_;  // one per reader thread
    sqlite::SqliteWriteTxn write_txn_;                       // over writer_conn_

    std::mutex write_mu_;
    std::condition_variable write_cv_;
    std::deque<WriteJob> write_queue_;  // guarded by write_mu_
    bool write_accepting_ = true;       // guarded by write_mu_

    std::mutex read_mu_;
    std::condition_variable read_cv_;
    std::deque<ReadJob> read_queue_;  // guarded by read_mu_
    bool read_accepting_ = true;      // guarded by read_mu_

    std::mutex close_mu_;  // serialises start() and close()
    std::thread writer_thread_;
    std::vector<std::thread> reader_threads_;
    // Set in start() before any job can run, read-only afterwards.
    std::vector<std::thread::id> own_threads_;
    bool closed_ = false;  // guarded by close_mu_
};

// Puts the writer's connection into WAL mode with the durability asked for. Errors name the
// file: this is the first statement that reads it, so a file that is not a database fails here.
Result<void> configure_writer(Connection& conn, const SqliteOptions& options) {
    sqlite3* db = conn.handle();
    auto fail = [&](int rc, int call_errno = 0) -> Error {
        Error error = sqlite::sqlite_error(db, rc, "opening the database", {}, call_errno);
        const char* cause = sqlite::sqlite_environment_cause(db, rc, call_errno);
        error.message =
            fmt::format("cannot open database '{}': {}{}{}", conn.path(), sqlite3_errmsg(db),
                        cause != nullptr ? ": " : "", cause != nullptr ? cause : "");
        return error;
    };
    // SQLite opens a file it may not write read-only without a word; the first write would
    // fail with a less helpful message.
    if (sqlite3_db_readonly(db, "main") == 1) {
        const std::string message = fmt::format(
            "cannot open database '{}' for writing: the file or its file system is read-only, "
            "or this user may not write it",
            conn.path());
        myelin::log::app()->error("sqlite: {}", message);
        return errors::unavailable(message, 5);
    }
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &stmt, nullptr);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        return fail(rc);
    }
    errno = 0;
    rc = sqlite3_step(stmt);
    const int step_errno = errno;
    std::string mode;
    if (rc == SQLITE_ROW) {
        const auto* text = sqlite3_column_text(stmt, 0);
        if (text != nullptr) mode = reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW) return fail(rc, step_errno);
    if (mode != "wal") {
        return errors::internal(fmt::format(
            "cannot open database '{}': it cannot use WAL mode (journal mode stays '{}')",
            conn.path(), mode));
    }
    const char* pragmas = options.durable
                              ? "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; "
                                "PRAGMA trusted_schema = OFF"
                              : "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; "
                                "PRAGMA trusted_schema = OFF";
    return conn.exec_script(pragmas);
}

}  // namespace

int sqlite_schema_version() { return sqlite::latest_schema_version(); }

Result<std::unique_ptr<Database>> open_sqlite(const std::string& path,
                                              const SqliteOptions& options) {
    if (options.reader_threads < 1 || options.max_batch < 1) {
        return errors::internal(
            fmt::format("invalid SQLite options: reader_threads ({}) and max_batch ({}) must "
                        "be at least 1",
                        options.reader_threads, options.max_batch));
    }
    sqlite::ConnectionConfig config;
    config.busy_timeout_ms = static_cast<int>(options.busy_timeout.count());
    config.vfs = options.vfs;

    auto writer = Connection::open(path, config);
    if (!writer) return writer.error();
    if (auto configured = configure_writer(**writer, options); !configured) {
        return configured.error();
    }
    auto version = sqlite::apply_migrations(**writer);
    if (!version) return version.error();

    config.read_only = true;
    std::vector<std::unique_ptr<Connection>> readers;
    for (int i = 0; i < options.reader_threads; ++i) {
        auto reader = Connection::open(path, config);
        if (!reader) return reader.error();
        if (auto trusted = (*reader)->exec_script("PRAGMA trusted_schema = OFF"); !trusted) {
            return trusted.error();
        }
        readers.push_back(std::move(*reader));
    }

    auto db = std::make_unique<SqliteDatabase>(options, std::move(*writer), std::move(readers));
    try {
        db->start();
    } catch (const std::system_error& e) {
        db->close();
        return errors::internal(fmt::format("cannot start the database threads: {}", e.what()));
    }
    myelin::log::app()->info(
        "sqlite: opened {} (schema version {}, {} readers, synchronous={}, max batch {})", path,
        *version, options.reader_threads, options.durable ? "FULL" : "NORMAL", options.max_batch);
    return std::unique_ptr<Database>(std::move(db));
}

}  // namespace myelin::storage
