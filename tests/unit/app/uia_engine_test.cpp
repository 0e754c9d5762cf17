// The UIA engine and registration tokens against a real SQLite database, a real (cheap)
// argon2id hasher and a manual clock: sessions bound to endpoint and user, expiry, completed
// stages, the password stage and its failure body, registration tokens reserved, completed and
// released; sessions shared by engines on separate opens of one database (as server processes
// behind a load balancer), used up exactly once when they race, and the bound on live sessions.

#include <cctype>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "myelin/auth/sodium_init.hpp"
#include "myelin/service/registration_tokens.hpp"
#include "myelin/service/uia.hpp"
#include "myelin/storage/await.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "service_test_env.hpp"

namespace myelin::service {
namespace {

namespace json = boost::json;
using test_support::ScratchDir;
constexpr std::int64_t kStart = 1'700'000'000'000;
constexpr const char* kAlice = "@alice:localhost";
constexpr const char* kBob = "@bob:localhost";
constexpr const char* kAlicePassword = "correct horse battery staple";
constexpr const char* kBobPassword = "hunter2 hunter2";

class UiaEngineTest : public ::testing::Test {
protected:
    void SetUp() override {
        auth::ensure_sodium();
        auto db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        db_ = std::move(*db);
        auth::PasswordParams params;
        params.memory_kib = 8192;
        params.iterations = 1;
        hasher_ = std::make_unique<auth::PasswordHasher>(params, 1, 16);
        tokens_ = std::make_unique<RegistrationTokens>(*db_, clock_);
        engine_ = std::make_unique<UiaEngine>(clock_, *hasher_, *db_, tokens_.get(), "localhost");
        add_user(kAlice, kAlicePassword);
        add_user(kBob, kBobPassword);
    }

    void TearDown() override {
        engine_.reset();
        hasher_.reset();
        if (db_) db_->close();
        db_.reset();
    }

    void add_user(const std::string& user_id, const std::string& password) {
        auto hash = hasher_->hash_sync(password);
        ASSERT_TRUE(hash);
        auto added = storage::write_sync<bool>(*db_, [&](storage::WriteTxn& txn) {
            storage::UserRecord user;
            user.user_id = user_id;
            user.password_hash = *hash;
            user.created_ts = kStart;
            return txn.insert_user(user);
        });
        ASSERT_TRUE(added && *added);
    }

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        boost::asio::io_context io;
        auto future = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
        io.run();
        return future.get();
    }

    Result<UiaCompletion> attempt(const json::object* auth, UiaChallenge challenge) {
        return run(engine_->authenticate(auth, std::move(challenge)));
    }
    Result<UiaCompletion> attempt(const json::object& auth, UiaChallenge challenge) {
        return attempt(&auth, std::move(challenge));
    }

    static UiaChallenge password_challenge(std::string user = kAlice,
                                           std::string endpoint = "POST /account/password") {
        UiaChallenge c;
        c.endpoint = std::move(endpoint);
        c.user_id = std::move(user);
        c.flows = {{"m.login.password"}};
        return c;
    }
    static UiaChallenge registration_challenge(std::vector<std::vector<std::string>> flows) {
        UiaChallenge c;
        c.endpoint = "POST /register";
        c.registration = true;
        c.flows = std::move(flows);
        return c;
    }

    // Opens a session with a bare request and returns its id.
    std::string start(UiaChallenge challenge) {
        auto r = attempt(nullptr, std::move(challenge));
        EXPECT_FALSE(r);
        if (r) return "";
        EXPECT_EQ(r.error().status, 401);
        return std::string(r.error().extra.at("session").as_string());
    }

    static json::object password_auth(const std::string& session, const std::string& user,
                                      const std::string& password) {
        return json::object{{"type", "m.login.password"},
                            {"session", session},
                            {"identifier", json::object{{"type", "m.id.user"}, {"user", user}}},
                            {"password", password}};
    }
    static json::object token_auth(const std::string& session, const std::string& token) {
        return json::object{
            {"type", "m.login.registration_token"}, {"session", session}, {"token", token}};
    }

    static std::string errcode(const Error& e) {
        auto it = e.extra.find("errcode");
        if (it != e.extra.end()) return std::string(it->value().as_string());
        return e.errcode;
    }

    storage::RegistrationTokenRecord token_record(const std::string& token) {
        auto listed = tokens_->list_sync();
        EXPECT_TRUE(listed);
        for (auto& t : *listed) {
            if (t.token == token) return t;
        }
        ADD_FAILURE() << "no token " << token;
        return {};
    }

    // Waits until every write queued so far has committed (writes run in order).
    void drain_writes() {
        auto r = storage::write_sync<bool>(*db_,
                                           [](storage::WriteTxn&) -> Result<bool> { return true; });
        ASSERT_TRUE(r);
    }

    // A second server process on the same database: its own open of the file, its own engine.
    struct OtherInstance {
        std::unique_ptr<storage::Database> db;
        std::unique_ptr<RegistrationTokens> tokens;
        std::unique_ptr<UiaEngine> engine;
        ~OtherInstance() {
            engine.reset();
            if (db) db->close();
        }
    };
    std::unique_ptr<OtherInstance> other_instance() {
        auto other = std::make_unique<OtherInstance>();
        auto db = storage::open_sqlite((dir_.path() / "hs.db").string());
        EXPECT_TRUE(db) << db.error().message;
        if (!db) return other;
        other->db = std::move(*db);
        other->tokens = std::make_unique<RegistrationTokens>(*other->db, clock_);
        other->engine = std::make_unique<UiaEngine>(clock_, *hasher_, *other->db,
                                                    other->tokens.get(), "localhost");
        return other;
    }
    Result<UiaCompletion> attempt_on(UiaEngine& engine, const json::object& auth,
                                     UiaChallenge challenge) {
        return run(engine.authenticate(&auth, std::move(challenge)));
    }

    // Runs one request on each engine at the same time (one io_context, storage jobs on each
    // database's own threads) and returns both outcomes.
    std::pair<Result<UiaCompletion>, Result<UiaCompletion>> race(UiaEngine& a, UiaEngine& b,
                                                                 const json::object& auth,
                                                                 const UiaChallenge& challenge) {
        boost::asio::io_context io;
        auto fa =
            boost::asio::co_spawn(io, a.authenticate(&auth, challenge), boost::asio::use_future);
        auto fb =
            boost::asio::co_spawn(io, b.authenticate(&auth, challenge), boost::asio::use_future);
        io.run();
        return {fa.get(), fb.get()};
    }

    ScratchDir dir_{"myelin-uia-test"};
    ManualClock clock_{kStart};
    std::unique_ptr<storage::Database> db_;
    std::unique_ptr<auth::PasswordHasher> hasher_;
    std::unique_ptr<RegistrationTokens> tokens_;
    std::unique_ptr<UiaEngine> engine_;
};

TEST_F(UiaEngineTest, FirstRequestWithoutAuthGets401WithFlowsAndNoErrcode) {
    auto r = attempt(nullptr, password_challenge());
    ASSERT_FALSE(r);
    const auto& e = r.error();
    EXPECT_EQ(e.status, 401);
    EXPECT_TRUE(e.body_is_extra_only);
    EXPECT_EQ(json::serialize(e.extra.at("flows")), R"([{"stages":["m.login.password"]}])");
    EXPECT_TRUE(e.extra.at("params").is_object());
    EXPECT_FALSE(e.extra.at("session").as_string().empty());
    EXPECT_TRUE(e.extra.at("completed").as_array().empty());
    EXPECT_FALSE(e.extra.contains("errcode"));
    EXPECT_EQ(engine_->session_count(), 1u);
}

TEST_F(UiaEngineTest, NeverSucceedsWithoutAuthEvenForDummyFlow) {
    for (int i = 0; i < 3; ++i) {
        auto r = attempt(nullptr, registration_challenge({{"m.login.dummy"}}));
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().status, 401);
    }
}

TEST_F(UiaEngineTest, DummyStageCompletesAndUsesTheSessionUp) {
    auto challenge = registration_challenge({{"m.login.dummy"}});
    auto session = start(challenge);
    json::object auth{{"type", "m.login.dummy"}, {"session", session}};
    auto r = attempt(auth, challenge);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->session_id, session);
    EXPECT_FALSE(r->registration_token);
    // A completed session cannot authorize a second request.
    auto again = attempt(auth, challenge);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().status, 400);
    EXPECT_EQ(again.error().errcode, "M_UNKNOWN");
    EXPECT_EQ(engine_->session_count(), 0u);
}

TEST_F(UiaEngineTest, DummyWithoutSessionStartsAndCompletesOne) {
    json::object auth{{"type", "m.login.dummy"}};
    auto r = attempt(auth, registration_challenge({{"m.login.dummy"}}));
    ASSERT_TRUE(r) << r.error().message;
}

TEST_F(UiaEngineTest, WrongPasswordAnswers401WithFlowsAndForbidden) {
    auto session = start(password_challenge());
    auto r = attempt(password_auth(session, "alice", "wrong password"), password_challenge());
    ASSERT_FALSE(r);
    const auto& e = r.error();
    EXPECT_EQ(e.status, 401);
    EXPECT_TRUE(e.body_is_extra_only);
    EXPECT_EQ(e.extra.at("errcode").as_string(), "M_FORBIDDEN");
    EXPECT_TRUE(e.extra.at("error").is_string());
    EXPECT_EQ(json::serialize(e.extra.at("flows")), R"([{"stages":["m.login.password"]}])");
    EXPECT_EQ(e.extra.at("session").as_string(), session);
    EXPECT_TRUE(e.extra.at("completed").as_array().empty());
    EXPECT_TRUE(e.extra.at("params").is_object());

    // The same session may retry with the right password.
    auto ok =
        attempt(password_auth(session, "@alice:localhost", kAlicePassword), password_challenge());
    ASSERT_TRUE(ok) << ok.error().message;
}

TEST_F(UiaEngineTest, LegacyUserKeyIsAccepted) {
    auto session = start(password_challenge());
    json::object auth{{"type", "m.login.password"},
                      {"session", session},
                      {"user", "alice"},
                      {"password", kAlicePassword}};
    auto r = attempt(auth, password_challenge());
    ASSERT_TRUE(r) << r.error().message;
}

TEST_F(UiaEngineTest, PasswordOfAnotherUserDoesNotCount) {
    // Bob's correct password does not authorize Alice's request.
    auto session = start(password_challenge());
    auto r = attempt(password_auth(session, "bob", kBobPassword), password_challenge());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 401);
    EXPECT_EQ(errcode(r.error()), "M_FORBIDDEN");
    EXPECT_TRUE(r.error().extra.at("completed").as_array().empty());
}

TEST_F(UiaEngineTest, PasswordStageWithoutSessionUserIsNotOffered) {
    // Registration has no user: m.login.password is never accepted there.
    auto challenge = registration_challenge({{"m.login.password"}});
    auto session = start(challenge);
    auto r = attempt(password_auth(session, "alice", kAlicePassword), challenge);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 401);
    EXPECT_EQ(errcode(r.error()), "M_UNRECOGNIZED");
}

TEST_F(UiaEngineTest, MissingPasswordIsBadRequest) {
    auto session = start(password_challenge());
    json::object auth{{"type", "m.login.password"}, {"session", session}, {"user", "alice"}};
    auto r = attempt(auth, password_challenge());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 400);
    EXPECT_EQ(r.error().errcode, "M_MISSING_PARAM");
}

TEST_F(UiaEngineTest, SessionIsBoundToItsEndpoint) {
    auto session = start(password_challenge(kAlice, "POST /account/password"));
    auto r = attempt(password_auth(session, "alice", kAlicePassword),
                     password_challenge(kAlice, "POST /account/deactivate"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 403);
    EXPECT_EQ(r.error().errcode, "M_FORBIDDEN");
}

TEST_F(UiaEngineTest, SessionIsBoundToItsUser) {
    auto session = start(password_challenge(kAlice));
    auto r = attempt(password_auth(session, "bob", kBobPassword), password_challenge(kBob));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 403);
    EXPECT_EQ(r.error().errcode, "M_FORBIDDEN");
}

TEST_F(UiaEngineTest, RegistrationSessionCannotBeUsedSignedIn) {
    auto session = start(registration_challenge({{"m.login.dummy"}}));
    UiaChallenge other;
    other.endpoint = "POST /register";
    other.user_id = kAlice;
    other.flows = {{"m.login.dummy"}};
    json::object auth{{"type", "m.login.dummy"}, {"session", session}};
    auto r = attempt(auth, other);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 403);
}

TEST_F(UiaEngineTest, UnknownSessionIs400) {
    auto r = attempt(password_auth("nosuchsession", "alice", kAlicePassword), password_challenge());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 400);
    EXPECT_EQ(r.error().errcode, "M_UNKNOWN");
}

TEST_F(UiaEngineTest, SessionExpiresAfterFifteenMinutes) {
    auto session = start(password_challenge());
    clock_.advance_ms(15 * 60 * 1000 - 1);
    auto wrong = attempt(password_auth(session, "alice", "nope"), password_challenge());
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().status, 401);  // still alive one ms before the end
    clock_.advance_ms(1);
    auto late = attempt(password_auth(session, "alice", kAlicePassword), password_challenge());
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().status, 400);
    EXPECT_EQ(late.error().errcode, "M_UNKNOWN");
}

TEST_F(UiaEngineTest, UnofferedStageIsRefusedWithFlows) {
    auto session = start(password_challenge());
    json::object auth{{"type", "m.login.dummy"}, {"session", session}};
    auto r = attempt(auth, password_challenge());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 401);
    EXPECT_EQ(errcode(r.error()), "M_UNRECOGNIZED");
    EXPECT_TRUE(r.error().extra.contains("flows"));
}

TEST_F(UiaEngineTest, RegistrationTokenOnlyValidOnRegistration) {
    auto created = tokens_->create_sync("abc", std::nullopt, 0);
    ASSERT_TRUE(created);
    UiaChallenge c = password_challenge();
    c.flows = {{"m.login.registration_token"}};  // even if an endpoint offered it
    auto session = start(c);
    auto r = attempt(token_auth(session, "abc"), c);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 401);
    EXPECT_EQ(errcode(r.error()), "M_UNRECOGNIZED");
    EXPECT_EQ(token_record("abc").pending, 0);
}

TEST_F(UiaEngineTest, StagesCompleteInOrderAndAreReported) {
    ASSERT_TRUE(tokens_->create_sync("tok", std::nullopt, 0));
    auto challenge = registration_challenge({{"m.login.registration_token", "m.login.dummy"}});
    auto session = start(challenge);
    json::object dummy{{"type", "m.login.dummy"}, {"session", session}};
    auto early = attempt(dummy, challenge);
    ASSERT_FALSE(early);
    EXPECT_EQ(errcode(early.error()), "M_UNRECOGNIZED");  // not the next stage

    auto first = attempt(token_auth(session, "tok"), challenge);
    ASSERT_FALSE(first);
    EXPECT_EQ(first.error().status, 401);
    EXPECT_FALSE(first.error().extra.contains("errcode"));
    EXPECT_EQ(json::serialize(first.error().extra.at("completed")),
              R"(["m.login.registration_token"])");

    auto done = attempt(dummy, challenge);
    ASSERT_TRUE(done) << done.error().message;
    ASSERT_TRUE(done->registration_token);
    EXPECT_EQ(*done->registration_token, "tok");
}

TEST_F(UiaEngineTest, RegistrationTokenIsReservedCompletedAndRunsOut) {
    auto created = tokens_->create_sync("once", 1, 0);
    ASSERT_TRUE(created) << created.error().message;
    auto challenge = registration_challenge({{"m.login.registration_token"}});

    auto s1 = start(challenge);
    auto r1 = attempt(token_auth(s1, "once"), challenge);
    ASSERT_TRUE(r1) << r1.error().message;
    ASSERT_TRUE(r1->registration_token);
    EXPECT_EQ(token_record("once").pending, 1);

    // The pending use already counts: a second registration cannot take it.
    auto s2 = start(challenge);
    auto r2 = attempt(token_auth(s2, "once"), challenge);
    ASSERT_FALSE(r2);
    EXPECT_EQ(r2.error().status, 401);
    EXPECT_EQ(errcode(r2.error()), "M_FORBIDDEN");
    EXPECT_FALSE(run(tokens_->validate("once")).value());

    ASSERT_TRUE(run(tokens_->complete("once")));
    auto t = token_record("once");
    EXPECT_EQ(t.pending, 0);
    EXPECT_EQ(t.completed, 1);
    EXPECT_FALSE(run(tokens_->validate("once")).value());
}

TEST_F(UiaEngineTest, FailedRegistrationReleasesItsReservation) {
    ASSERT_TRUE(tokens_->create_sync("again", 1, 0));
    auto challenge = registration_challenge({{"m.login.registration_token"}});
    auto s1 = start(challenge);
    auto r1 = attempt(token_auth(s1, "again"), challenge);
    ASSERT_TRUE(r1);
    ASSERT_TRUE(run(tokens_->release("again")));
    EXPECT_EQ(token_record("again").pending, 0);
    EXPECT_TRUE(run(tokens_->validate("again")).value());
}

TEST_F(UiaEngineTest, ExpiredSessionReleasesItsToken) {
    ASSERT_TRUE(tokens_->create_sync("held", 1, 0));
    auto challenge = registration_challenge({{"m.login.registration_token", "m.login.dummy"}});
    auto session = start(challenge);
    auto r = attempt(token_auth(session, "held"), challenge);
    ASSERT_FALSE(r);  // one stage left
    EXPECT_EQ(token_record("held").pending, 1);
    clock_.advance_ms(UiaEngine::kSessionLifetimeMs);
    engine_->expire_sessions();
    drain_writes();
    EXPECT_EQ(token_record("held").pending, 0);
    EXPECT_EQ(engine_->session_count(), 0u);
    EXPECT_TRUE(run(tokens_->validate("held")).value());
}

TEST_F(UiaEngineTest, InvalidTokensFailTheStage) {
    ASSERT_TRUE(tokens_->create_sync("soon", std::nullopt, kStart + 1000));
    auto challenge = registration_challenge({{"m.login.registration_token"}});
    for (const char* bad : {"unknown", "bad token!", "soon"}) {
        if (std::string(bad) == "soon") clock_.advance_ms(1000);  // now expired
        auto session = start(challenge);
        auto r = attempt(token_auth(session, bad), challenge);
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error().status, 401) << bad;
        EXPECT_EQ(errcode(r.error()), "M_FORBIDDEN") << bad;
    }
    EXPECT_EQ(token_record("soon").pending, 0);
}

TEST_F(UiaEngineTest, WrongPasswordsSpendTheFailedLoginBudget) {
    RateLimitsConfig config;
    config.enabled = true;
    config.failed_login = BucketConfig{0.0001, 2.0};
    InMemoryRateLimitStore store;
    RateLimiter limiter(config, "localhost", store, clock_);
    engine_->set_rate_limiter(&limiter);

    // Right passwords cost nothing.
    for (int i = 0; i < 3; ++i) {
        auto session = start(password_challenge());
        ASSERT_TRUE(attempt(password_auth(session, "alice", kAlicePassword), password_challenge()));
    }
    auto session = start(password_challenge());
    for (int i = 0; i < 2; ++i) {
        auto r = attempt(password_auth(session, "alice", "guess"), password_challenge());
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().status, 401);
    }
    auto limited = attempt(password_auth(session, "alice", kAlicePassword), password_challenge());
    ASSERT_FALSE(limited);
    EXPECT_EQ(limited.error().status, 429);
    EXPECT_EQ(limited.error().errcode, "M_LIMIT_EXCEEDED");
}

TEST_F(UiaEngineTest, ARegistrationFlowMaySpanTwoInstances) {
    auto b = other_instance();
    auto challenge = registration_challenge({{"m.login.dummy"}});
    auto session = start(challenge);  // the first request reaches this instance
    json::object auth{{"type", "m.login.dummy"}, {"session", session}};
    auto done = attempt_on(*b->engine, auth, challenge);  // the second reaches the other one
    ASSERT_TRUE(done) << done.error().message;
    EXPECT_EQ(done->session_id, session);
    // Used up everywhere.
    for (UiaEngine* engine : {engine_.get(), b->engine.get()}) {
        auto again = attempt_on(*engine, auth, challenge);
        ASSERT_FALSE(again);
        EXPECT_EQ(again.error().status, 400);
        EXPECT_EQ(again.error().errcode, "M_UNKNOWN");
    }
    // An id no instance issued is unknown on both.
    json::object forged{{"type", "m.login.dummy"}, {"session", "x" + session.substr(1)}};
    EXPECT_EQ(attempt_on(*b->engine, forged, challenge).error().status, 400);
}

TEST_F(UiaEngineTest, APasswordFlowMaySpanTwoInstancesAndStaysBound) {
    auto b = other_instance();
    auto session = start(password_challenge(kAlice, "DELETE /devices/PHONE"));
    // A wrong password on the other instance: the same session, 401 with flows and M_FORBIDDEN.
    auto wrong = attempt_on(*b->engine, password_auth(session, "alice", "nope"),
                            password_challenge(kAlice, "DELETE /devices/PHONE"));
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().status, 401);
    EXPECT_EQ(errcode(wrong.error()), "M_FORBIDDEN");
    EXPECT_EQ(wrong.error().extra.at("session").as_string(), session);
    // The binding to endpoint and user holds on every instance.
    auto other_device = attempt_on(*b->engine, password_auth(session, "alice", kAlicePassword),
                                   password_challenge(kAlice, "DELETE /devices/TABLET"));
    ASSERT_FALSE(other_device);
    EXPECT_EQ(other_device.error().status, 403);
    auto ok = attempt_on(*b->engine, password_auth(session, "alice", kAlicePassword),
                         password_challenge(kAlice, "DELETE /devices/PHONE"));
    ASSERT_TRUE(ok) << ok.error().message;
    auto replay = attempt(password_auth(session, "alice", kAlicePassword),
                          password_challenge(kAlice, "DELETE /devices/PHONE"));
    ASSERT_FALSE(replay);
    EXPECT_EQ(replay.error().status, 400);
}

TEST_F(UiaEngineTest, CompletedStagesAreStoredDurably) {
    ASSERT_TRUE(tokens_->create_sync("durable", 1, 0));
    auto challenge = registration_challenge({{"m.login.registration_token", "m.login.dummy"}});
    auto session = start(challenge);
    auto first = attempt(token_auth(session, "durable"), challenge);
    ASSERT_FALSE(first);
    EXPECT_EQ(json::serialize(first.error().extra.at("completed")),
              R"(["m.login.registration_token"])");
    // This instance goes away; the flow goes on elsewhere with what the database holds.
    engine_.reset();
    auto b = other_instance();
    auto done = attempt_on(
        *b->engine, json::object{{"type", "m.login.dummy"}, {"session", session}}, challenge);
    ASSERT_TRUE(done) << done.error().message;
    ASSERT_TRUE(done->registration_token);
    EXPECT_EQ(*done->registration_token, "durable");
    EXPECT_EQ(token_record("durable").pending, 1);  // held by the request now
}

TEST_F(UiaEngineTest, OfRacingRequestsOnOneSessionExactlyOneProceeds) {
    auto b = other_instance();
    auto challenge = registration_challenge({{"m.login.dummy"}});
    for (int round = 0; round < 10; ++round) {
        auto session = start(challenge);
        json::object auth{{"type", "m.login.dummy"}, {"session", session}};
        auto [ra, rb] = race(*engine_, *b->engine, auth, challenge);
        EXPECT_EQ(static_cast<int>(ra.has_value()) + static_cast<int>(rb.has_value()), 1)
            << "round " << round;
        const auto& loser = ra ? rb : ra;
        if (!loser) {
            EXPECT_EQ(loser.error().status, 400);
            EXPECT_EQ(loser.error().errcode, "M_UNKNOWN");
        }
    }
    // The same when every stage is done and both requests only name the session.
    for (int round = 0; round < 10; ++round) {
        const std::string id = "completed" + std::to_string(round);
        auto stored = storage::write_sync<bool>(*db_, [&](storage::WriteTxn& txn) {
            storage::UiaSessionRecord s;
            s.session_id = id;
            s.endpoint = "POST /register";
            s.registration = true;
            s.flows = {{"m.login.dummy"}};
            s.completed = {"m.login.dummy"};
            s.created_ts = kStart;
            return txn.insert_uia_session(s);
        });
        ASSERT_TRUE(stored && *stored);
        json::object auth{{"session", id}};
        auto [ra, rb] = race(*engine_, *b->engine, auth, challenge);
        EXPECT_EQ(static_cast<int>(ra.has_value()) + static_cast<int>(rb.has_value()), 1)
            << "round " << round;
    }
}

TEST_F(UiaEngineTest, TooManyLiveSessionsAre503UntilSomeEnd) {
    engine_ = std::make_unique<UiaEngine>(clock_, *hasher_, *db_, tokens_.get(), "localhost", 2);
    auto challenge = registration_challenge({{"m.login.dummy"}});
    auto first = start(challenge);
    start(challenge);
    auto refused = attempt(nullptr, challenge);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().status, 503);
    EXPECT_EQ(refused.error().retry_after_s, 30);
    EXPECT_EQ(engine_->session_count(), 2u);
    // A session used up frees its place once the engine counts again.
    ASSERT_TRUE(attempt(json::object{{"type", "m.login.dummy"}, {"session", first}}, challenge));
    clock_.advance_ms(UiaEngine::kRecountIntervalMs);
    start(challenge);
    EXPECT_EQ(attempt(nullptr, challenge).error().status, 503);
    // Sessions opened by other processes count too.
    clock_.advance_ms(UiaEngine::kSessionLifetimeMs);  // all expired: room for two
    auto b = other_instance();
    json::object none;
    for (int i = 0; i < 2; ++i) {
        auto r = attempt_on(*b->engine, none, challenge);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().status, 401);
    }
    EXPECT_EQ(attempt(nullptr, challenge).error().status, 503);
}

TEST_F(UiaEngineTest, PruningReleasesOnlyReservationsOfUnfinishedSessions) {
    ASSERT_TRUE(tokens_->create_sync("kept", 2, 0));
    auto one_stage = registration_challenge({{"m.login.registration_token"}});
    auto two_stages = registration_challenge({{"m.login.registration_token", "m.login.dummy"}});
    // One session used up with the token (the registration owns the use now), one left after
    // its first stage (the session holds the use).
    auto done = attempt(token_auth(start(one_stage), "kept"), one_stage);
    ASSERT_TRUE(done) << done.error().message;
    ASSERT_FALSE(attempt(token_auth(start(two_stages), "kept"), two_stages));
    EXPECT_EQ(token_record("kept").pending, 2);

    // Not expired yet: nothing goes.
    clock_.advance_ms(UiaEngine::kSessionLifetimeMs - 1);
    EXPECT_EQ(engine_->expire_sessions().value(), 0);
    clock_.advance_ms(1);
    EXPECT_EQ(engine_->expire_sessions().value(), 2);
    EXPECT_EQ(token_record("kept").pending, 1);  // only the abandoned session's use came back
}

TEST(RegistrationTokens, WellFormedFollowsTheSpecGrammar) {
    EXPECT_TRUE(RegistrationTokens::well_formed("aZ09._~-"));
    EXPECT_FALSE(RegistrationTokens::well_formed(""));
    EXPECT_FALSE(RegistrationTokens::well_formed("with space"));
    EXPECT_FALSE(RegistrationTokens::well_formed("ümlaut"));
    EXPECT_TRUE(RegistrationTokens::well_formed(std::string(64, 'a')));
    EXPECT_FALSE(RegistrationTokens::well_formed(std::string(65, 'a')));
}

TEST(RegistrationTokens, UsableCountsPendingAndExpiry) {
    storage::RegistrationTokenRecord t;
    t.token = "x";
    EXPECT_TRUE(RegistrationTokens::usable(t, kStart));  // unlimited, never expires
    t.uses_allowed = 2;
    t.pending = 1;
    EXPECT_TRUE(RegistrationTokens::usable(t, kStart));
    t.completed = 1;
    EXPECT_FALSE(RegistrationTokens::usable(t, kStart));
    t.uses_allowed = 0;
    t.pending = t.completed = 0;
    EXPECT_FALSE(RegistrationTokens::usable(t, kStart));
    t.uses_allowed.reset();
    t.expiry_ts = kStart + 1;
    EXPECT_TRUE(RegistrationTokens::usable(t, kStart));
    EXPECT_FALSE(RegistrationTokens::usable(t, kStart + 1));
}

TEST_F(UiaEngineTest, CreateChecksItsArgumentsAndGeneratesTokens) {
    auto generated = tokens_->create_sync(std::nullopt, 3, 0);
    ASSERT_TRUE(generated) << generated.error().message;
    EXPECT_EQ(generated->token.size(), RegistrationTokens::kGeneratedLength);
    for (char c : generated->token) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)));
    EXPECT_EQ(generated->uses_allowed, 3);
    EXPECT_EQ(generated->created_ts, kStart);

    EXPECT_EQ(tokens_->create_sync("bad token", std::nullopt, 0).error().errcode,
              "M_INVALID_PARAM");
    EXPECT_EQ(tokens_->create_sync("neg", -1, 0).error().errcode, "M_INVALID_PARAM");
    EXPECT_EQ(tokens_->create_sync("past", std::nullopt, kStart).error().errcode,
              "M_INVALID_PARAM");
    ASSERT_TRUE(tokens_->create_sync("dup", std::nullopt, 0));
    EXPECT_EQ(tokens_->create_sync("dup", std::nullopt, 0).error().errcode, "M_INVALID_PARAM");

    auto listed = tokens_->list_sync();
    ASSERT_TRUE(listed);
    EXPECT_EQ(listed->size(), 2u);
    EXPECT_TRUE(tokens_->remove_sync("dup").value());
    EXPECT_FALSE(tokens_->remove_sync("dup").value());
    EXPECT_FALSE(run(tokens_->validate("dup")).value());
}

}  // namespace
}  // namespace myelin::service
