// The UIA engine and registration tokens against a real SQLite database, a real (cheap)
// argon2id hasher and a manual clock: sessions bound to endpoint and user, expiry, completed
// stages, the password stage and its failure body, registration tokens reserved, completed and
// released.

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
