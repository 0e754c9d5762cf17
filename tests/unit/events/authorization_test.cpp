// One test per authorization rule of room versions 10 and 11, each with the allowed and the
// refused case; the rule number asserted is the one the spec gives (see authorization.hpp).

#include "myelin/events/authorization.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include "myelin/events/event_signing.hpp"
#include "myelin/events/power_levels.hpp"

namespace myelin::events {
namespace {

namespace json = boost::json;

constexpr const char* kAlice = "@alice:a.test";  // creator, level 100
constexpr const char* kBob = "@bob:a.test";      // joined, level 50 (moderator)
constexpr const char* kCarol = "@carol:b.test";  // joined, default level 0
constexpr const char* kDave = "@dave:b.test";    // not in the room
constexpr const char* kRoom = "!room:a.test";

json::object pdu(std::string_view type, std::string_view sender, std::string_view content,
                 const char* state_key = nullptr) {
    json::object e{{"type", type},
                   {"sender", sender},
                   {"room_id", kRoom},
                   {"content", json::parse(content)},
                   {"prev_events", json::array{"$prev"}},
                   {"auth_events", json::array{}},
                   {"depth", 5},
                   {"origin_server_ts", 1}};
    if (state_key != nullptr) e["state_key"] = state_key;
    return e;
}

json::object member(std::string_view sender, std::string_view target, std::string_view membership,
                    std::string_view extra = "") {
    std::string content = "{\"membership\":\"" + std::string(membership) + "\"";
    if (!extra.empty()) content += "," + std::string(extra);
    content += "}";
    return pdu("m.room.member", sender, content, std::string(target).c_str());
}

std::string version_name(const ::testing::TestParamInfo<const RoomVersion*>& param_info) {
    return "v" + std::string(param_info.param->id);
}

class Authorization : public ::testing::TestWithParam<const RoomVersion*> {
protected:
    const RoomVersion& version() const { return *GetParam(); }

    json::object create_event(std::string_view extra = "") const {
        std::string content = "{\"room_version\":\"" + std::string(version().id) + "\"";
        if (version().creator_in_content) content += ",\"creator\":\"" + std::string(kAlice) + "\"";
        if (!extra.empty()) content += "," + std::string(extra);
        content += "}";
        json::object e = pdu("m.room.create", kAlice, content, "");
        e["prev_events"] = json::array{};
        return e;
    }

    // A room created by Alice: Bob (50) and Carol (0) joined, public join rule.
    void SetUp() override {
        state_.put("$create", create_event());
        put(member(kAlice, kAlice, "join"));
        put(pdu("m.room.power_levels", kAlice,
                R"({"users":{"@alice:a.test":100,"@bob:a.test":50},"users_default":0,
                    "events":{"m.room.name":50,"m.room.power_levels":100},"events_default":0,
                    "state_default":50,"ban":50,"kick":50,"redact":50,"invite":0})",
                ""));
        put(pdu("m.room.join_rules", kAlice, R"({"join_rule":"public"})", ""));
        put(member(kBob, kBob, "join"));
        put(member(kCarol, kCarol, "join"));
    }

    void put(json::object e) { state_.put("$" + std::to_string(++counter_), std::move(e)); }
    void set_join_rule(std::string_view rule) {
        put(pdu("m.room.join_rules", kAlice, "{\"join_rule\":\"" + std::string(rule) + "\"}", ""));
    }
    void set_membership(std::string_view user, std::string_view membership) {
        put(member(kAlice, user, membership));
    }

    AuthDecision check(const json::object& event) const {
        return authorize(event, version(), state_, keys_);
    }
    void expect_allowed(const json::object& event, std::string_view rule) const {
        const AuthDecision d = check(event);
        EXPECT_TRUE(d.allowed) << "rule " << d.rule << ": " << d.reason;
        EXPECT_EQ(d.rule, rule) << d.reason;
    }
    void expect_refused(const json::object& event, std::string_view rule) const {
        const AuthDecision d = check(event);
        EXPECT_FALSE(d.allowed) << "allowed by rule " << d.rule;
        EXPECT_EQ(d.rule, rule) << d.reason;
        if (!d.allowed) {
            EXPECT_FALSE(d.reason.empty());
        }
    }

    AuthState state_;
    VerifyKeys keys_;
    int counter_ = 0;
};

INSTANTIATE_TEST_SUITE_P(RoomVersions, Authorization,
                         ::testing::Values(&kRoomVersion10, &kRoomVersion11), version_name);

// ---- Rule 1: m.room.create ----

TEST_P(Authorization, Rule1_1_CreateWithPrevEventsIsRefused) {
    expect_allowed(create_event(), "1.5");
    json::object e = create_event();
    e["prev_events"] = json::array{"$x"};
    expect_refused(e, "1.1");
}

TEST_P(Authorization, Rule1_2_CreateRoomDomainMustBeSenders) {
    json::object e = create_event();
    e["room_id"] = "!room:b.test";
    expect_refused(e, "1.2");
    e["room_id"] = "!room";
    expect_refused(e, "1.2");
}

TEST_P(Authorization, Rule1_3_CreateRoomVersionMustBeRecognised) {
    json::object e = create_event();
    e["content"].as_object()["room_version"] = "999";
    expect_refused(e, "1.3");
    e["content"].as_object()["room_version"] = 10;
    expect_refused(e, "1.3");
    // Another supported version than the one authorized: another room.
    e["content"].as_object()["room_version"] = version().id == "10" ? "11" : "10";
    expect_refused(e, "1.3");
    // Absent is not refused by rule 1.3.
    e["content"].as_object().erase("room_version");
    expect_allowed(e, "1.5");
}

TEST_P(Authorization, Rule1_4_CreatorRequiredInV10Only) {
    json::object e = create_event();
    e["content"].as_object().erase("creator");
    if (version().creator_in_content) {
        expect_refused(e, "1.4");
    } else {
        expect_allowed(e, "1.5");
    }
}

// ---- Rules 2 and 3 ----

TEST_P(Authorization, Rule2_4_NoCreateInStateIsRefused) {
    AuthState empty;
    const AuthDecision d = authorize(pdu("m.room.message", kAlice, "{}"), version(), empty, keys_);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, "2.4");
    expect_allowed(pdu("m.room.message", kAlice, "{}"), "10");
}

TEST_P(Authorization, Rule2_AuthEventsSelectionAndChecks) {
    const json::object join = member(kDave, kDave, "join");
    const std::vector<StateKey> keys = auth_event_keys(join, version());
    const std::vector<StateKey> expected{{"m.room.create", ""},
                                         {"m.room.join_rules", ""},
                                         {"m.room.member", kDave},
                                         {"m.room.power_levels", ""}};
    EXPECT_EQ(keys, expected);
    EXPECT_TRUE(auth_event_keys(create_event(), version()).empty());
    const json::object via =
        member(kDave, kDave, "join", R"("join_authorised_via_users_server":"@bob:a.test")");
    EXPECT_EQ(auth_event_keys(via, version()).size(), 5U);
    const json::object tpi =
        member(kAlice, kDave, "invite", R"("third_party_invite":{"signed":{"token":"tok"}})");
    const auto tpi_keys = auth_event_keys(tpi, version());
    EXPECT_NE(
        std::find(tpi_keys.begin(), tpi_keys.end(), StateKey{"m.room.third_party_invite", "tok"}),
        tpi_keys.end());
    const auto message_keys = auth_event_keys(pdu("m.room.message", kCarol, "{}"), version());
    EXPECT_EQ(message_keys.size(), 3U);  // create, power levels, sender's member

    auto entry = [&](std::string id, json::object e, bool rejected = false) {
        return AuthEvent{std::move(id), std::move(e), rejected};
    };
    {
        AuthState out;
        const AuthDecision d = auth_state_from_auth_events(
            join, version(),
            {entry("$c", create_event()),
             entry("$j", pdu("m.room.join_rules", kAlice, R"({"join_rule":"public"})", ""))},
            out);
        EXPECT_TRUE(d.allowed) << d.reason;
        EXPECT_EQ(out.size(), 2U);
        EXPECT_EQ(out.join_rule(), "public");
        EXPECT_TRUE(authorize(join, version(), out, keys_).allowed);
    }
    {
        AuthState out;
        const AuthDecision d = auth_state_from_auth_events(
            join, version(), {entry("$c", create_event()), entry("$c2", create_event())}, out);
        EXPECT_EQ(d.rule, "2.1");
        EXPECT_FALSE(d.allowed);
    }
    {
        AuthState out;
        const AuthDecision d = auth_state_from_auth_events(
            join, version(),
            {entry("$c", create_event()),
             entry("$n", pdu("m.room.name", kAlice, R"({"name":"x"})", ""))},
            out);
        EXPECT_EQ(d.rule, "2.2");
        EXPECT_FALSE(d.allowed);
    }
    {
        AuthState out;
        const AuthDecision d = auth_state_from_auth_events(
            join, version(),
            {entry("$c", create_event()), entry("$m", member(kCarol, kCarol, "join"))}, out);
        EXPECT_EQ(d.rule, "2.2");  // Carol's membership is neither sender's nor target's
    }
    {
        AuthState out;
        const AuthDecision d =
            auth_state_from_auth_events(join, version(), {entry("$c", create_event(), true)}, out);
        EXPECT_EQ(d.rule, "2.3");
    }
    {
        AuthState out;
        const AuthDecision d = auth_state_from_auth_events(
            join, version(),
            {entry("$j", pdu("m.room.join_rules", kAlice, R"({"join_rule":"public"})", ""))}, out);
        EXPECT_EQ(d.rule, "2.4");
        EXPECT_EQ(out.size(), 0U);
    }
}

TEST_P(Authorization, Rule3_NoFederateKeepsOtherServersOut) {
    state_.put("$create", create_event(R"("m.federate":false)"));
    expect_refused(pdu("m.room.message", kCarol, "{}"), "3");  // b.test
    expect_refused(member(kDave, kDave, "join"), "3");
    expect_allowed(pdu("m.room.message", kBob, "{}"), "10");  // a.test, like the creator
    state_.put("$create", create_event(R"("m.federate":true)"));
    expect_allowed(pdu("m.room.message", kCarol, "{}"), "10");
}

// ---- Rule 4: m.room.member ----

TEST_P(Authorization, Rule4_1_MemberNeedsStateKeyAndMembership) {
    json::object no_key = member(kDave, kDave, "join");
    no_key.erase("state_key");
    expect_refused(no_key, "4.1");
    expect_refused(pdu("m.room.member", kDave, R"({"displayname":"d"})", kDave), "4.1");
    expect_refused(pdu("m.room.member", kDave, R"({"membership":1})", kDave), "4.1");
    expect_allowed(member(kDave, kDave, "join"), "4.3.6");
}

TEST_P(Authorization, Rule4_2_JoinAuthorisedViaMustBeSignedByThatServer) {
    set_join_rule("restricted");
    const SigningKey a_key = SigningKey::generate("a");
    keys_.add("a.test", a_key.key_id(), a_key.public_key());
    json::object join =
        member(kDave, kDave, "join", R"("join_authorised_via_users_server":"@bob:a.test")");
    expect_refused(join, "4.2.1");  // unsigned
    const SigningKey other = SigningKey::generate("a");
    json::object wrongly_signed = join;
    ASSERT_TRUE(hash_and_sign_event(wrongly_signed, version(), "a.test", other));
    expect_refused(wrongly_signed, "4.2.1");
    ASSERT_TRUE(hash_and_sign_event(join, version(), "a.test", a_key));
    expect_allowed(join, "4.3.5.3");
    json::object not_user =
        member(kDave, kDave, "join", R"("join_authorised_via_users_server":"bob")");
    expect_refused(not_user, "4.2.1");
}

TEST_P(Authorization, Rule4_3_1_CreatorJoinsRightAfterCreate) {
    AuthState fresh;
    fresh.put("$create", create_event());
    json::object join = member(kAlice, kAlice, "join");
    join["prev_events"] = json::array{"$create"};
    AuthDecision d = authorize(join, version(), fresh, keys_);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.rule, "4.3.1");
    // Someone else, or after another event: no shortcut (invite-only by default).
    json::object other = member(kDave, kDave, "join");
    other["prev_events"] = json::array{"$create"};
    d = authorize(other, version(), fresh, keys_);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, "4.3.4");
    join["prev_events"] = json::array{"$create", "$other"};
    d = authorize(join, version(), fresh, keys_);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, "4.3.4");
}

TEST_P(Authorization, Rule4_3_1_CreatorIsContentCreatorInV10SenderInV11) {
    // A create event whose content.creator names someone else than its sender.
    AuthState fresh;
    json::object create = create_event();
    create["content"].as_object()["creator"] = kBob;
    fresh.put("$create", create);
    json::object alice = member(kAlice, kAlice, "join");
    alice["prev_events"] = json::array{"$create"};
    json::object bob = member(kBob, kBob, "join");
    bob["prev_events"] = json::array{"$create"};
    if (version().creator_in_content) {
        EXPECT_EQ(authorize(bob, version(), fresh, keys_).rule, "4.3.1");
        EXPECT_FALSE(authorize(alice, version(), fresh, keys_).allowed);
    } else {
        EXPECT_EQ(authorize(alice, version(), fresh, keys_).rule, "4.3.1");
        EXPECT_FALSE(authorize(bob, version(), fresh, keys_).allowed);
    }
}

TEST_P(Authorization, Rule4_3_2_JoinOnlyForOneself) {
    expect_refused(member(kAlice, kDave, "join"), "4.3.2");
}

TEST_P(Authorization, Rule4_3_3_BannedCannotJoin) {
    set_membership(kDave, "ban");
    expect_refused(member(kDave, kDave, "join"), "4.3.3");
}

TEST_P(Authorization, Rule4_3_4_InviteAndKnockRoomsNeedInvite) {
    for (const char* rule : {"invite", "knock"}) {
        set_join_rule(rule);
        set_membership(kDave, "leave");
        expect_refused(member(kDave, kDave, "join"), "4.3.4");
        set_membership(kDave, "knock");
        expect_refused(member(kDave, kDave, "join"), "4.3.4");
        set_membership(kDave, "invite");
        expect_allowed(member(kDave, kDave, "join"), "4.3.4");
        expect_allowed(member(kCarol, kCarol, "join"), "4.3.4");  // already joined
    }
}

TEST_P(Authorization, Rule4_3_4_NoJoinRulesEventMeansInvite) {
    AuthState s;
    s.put("$create", create_event());
    s.put("$a", member(kAlice, kAlice, "join"));
    EXPECT_EQ(s.join_rule(), "invite");
    EXPECT_EQ(authorize(member(kDave, kDave, "join"), version(), s, keys_).rule, "4.3.4");
    EXPECT_FALSE(authorize(member(kDave, kDave, "join"), version(), s, keys_).allowed);
}

TEST_P(Authorization, Rule4_3_5_RestrictedJoins) {
    const SigningKey a_key = SigningKey::generate("a");
    keys_.add("a.test", a_key.key_id(), a_key.public_key());
    auto signed_join = [&](std::string_view via) {
        json::object e =
            member(kDave, kDave, "join",
                   "\"join_authorised_via_users_server\":\"" + std::string(via) + "\"");
        EXPECT_TRUE(hash_and_sign_event(e, version(), "a.test", a_key));
        return e;
    };
    for (const char* rule : {"restricted", "knock_restricted"}) {
        set_join_rule(rule);
        // 4.3.5.1: already invited (or joined) members need no authoriser.
        set_membership(kDave, "invite");
        expect_allowed(member(kDave, kDave, "join"), "4.3.5.1");
        set_membership(kDave, "leave");
        // 4.3.5.2: no authoriser, or one who cannot invite.
        expect_refused(member(kDave, kDave, "join"), "4.3.5.2");
        put(pdu("m.room.power_levels", kAlice,
                R"({"users":{"@alice:a.test":100,"@bob:a.test":50},"invite":60})", ""));
        expect_refused(signed_join(kBob), "4.3.5.2");    // level 50 < 60
        expect_allowed(signed_join(kAlice), "4.3.5.3");  // level 100
        put(member(kAlice, kAlice, "leave"));
        expect_refused(signed_join(kAlice), "4.3.5.2");  // not joined any more
        put(member(kAlice, kAlice, "join"));
        put(pdu("m.room.power_levels", kAlice,
                R"({"users":{"@alice:a.test":100,"@bob:a.test":50}})", ""));
        expect_allowed(signed_join(kBob), "4.3.5.3");
        // "@nobody" is no member at all.
        expect_refused(signed_join("@nobody:a.test"), "4.3.5.2");
    }
}

TEST_P(Authorization, Rule4_3_6_PublicRoomsAllowJoins) {
    expect_allowed(member(kDave, kDave, "join"), "4.3.6");
}

TEST_P(Authorization, Rule4_3_7_OtherJoinRulesRefuse) {
    for (const char* rule : {"private", "unknown", ""}) {
        set_join_rule(rule);
        expect_refused(member(kDave, kDave, "join"), "4.3.7");
    }
}

TEST_P(Authorization, Rule4_4_2_InviterMustBeJoined) {
    expect_refused(member(kDave, "@erin:b.test", "invite"), "4.4.2");
    set_membership(kDave, "invite");
    expect_refused(member(kDave, "@erin:b.test", "invite"), "4.4.2");
}

TEST_P(Authorization, Rule4_4_3_CannotInviteJoinedOrBanned) {
    expect_refused(member(kCarol, kBob, "invite"), "4.4.3");
    set_membership(kDave, "ban");
    expect_refused(member(kCarol, kDave, "invite"), "4.4.3");
}

TEST_P(Authorization, Rule4_4_4_InviteNeedsInviteLevel) {
    expect_allowed(member(kCarol, kDave, "invite"), "4.4.4");  // invite level 0
    set_membership(kDave, "knock");
    expect_allowed(member(kBob, kDave, "invite"), "4.4.4");  // accepting a knock
    put(pdu("m.room.power_levels", kAlice,
            R"({"users":{"@alice:a.test":100,"@bob:a.test":50},"invite":50})", ""));
    expect_refused(member(kCarol, kDave, "invite"), "4.4.5");
    expect_allowed(member(kBob, kDave, "invite"), "4.4.4");
}

class ThirdPartyInvite : public Authorization {
protected:
    // Alice's m.room.third_party_invite for token "tok", with the identity server's key in
    // public_keys (and an unrelated key in public_key).
    void add_invite_event(const std::string& sender = kAlice) {
        const SigningKey unrelated = SigningKey::generate("x");
        json::object content{
            {"display_name", "d***@example.org"},
            {"key_validity_url", "https://id.example/isvalid"},
            {"public_key", unrelated.public_key_base64()},
            {"public_keys",
             json::array{json::object{{"public_key", identity_.public_key_base64()}}}}};
        json::object e = pdu("m.room.third_party_invite", sender, "{}", "tok");
        e["content"] = content;
        put(e);
    }
    json::object invite(std::string_view mxid, std::string_view token, bool sign = true,
                        std::string_view sender = kAlice) {
        json::object signed_object{{"mxid", mxid}, {"token", token}};
        if (sign) {
            EXPECT_TRUE(sign_json(signed_object, "id.example", identity_));
        }
        json::object e = member(sender, kDave, "invite");
        e["content"].as_object()["third_party_invite"] =
            json::object{{"display_name", "d"}, {"signed", signed_object}};
        return e;
    }
    const SigningKey identity_ = SigningKey::generate("0");
};

INSTANTIATE_TEST_SUITE_P(RoomVersions, ThirdPartyInvite,
                         ::testing::Values(&kRoomVersion10, &kRoomVersion11), version_name);

TEST_P(ThirdPartyInvite, Rule4_4_1_7_ValidSignatureAllows) {
    add_invite_event();
    expect_allowed(invite(kDave, "tok"), "4.4.1.7");
}

TEST_P(ThirdPartyInvite, Rule4_4_1_7_KeyInPublicKeyAlsoCounts) {
    json::object e = pdu("m.room.third_party_invite", kAlice, "{}", "tok");
    e["content"] = json::object{{"public_key", identity_.public_key_base64()}};
    put(e);
    expect_allowed(invite(kDave, "tok"), "4.4.1.7");
}

TEST_P(ThirdPartyInvite, Rule4_4_1_1_BannedTargetRefused) {
    add_invite_event();
    set_membership(kDave, "ban");
    expect_refused(invite(kDave, "tok"), "4.4.1.1");
}

TEST_P(ThirdPartyInvite, Rule4_4_1_2_NeedsSigned) {
    add_invite_event();
    json::object e =
        member(kAlice, kDave, "invite", R"("third_party_invite":{"display_name":"d"})");
    expect_refused(e, "4.4.1.2");
    e = member(kAlice, kDave, "invite", R"("third_party_invite":"x")");
    expect_refused(e, "4.4.1.2");
}

TEST_P(ThirdPartyInvite, Rule4_4_1_3_SignedNeedsMxidAndToken) {
    add_invite_event();
    expect_refused(
        member(kAlice, kDave, "invite", R"("third_party_invite":{"signed":{"token":"tok"}})"),
        "4.4.1.3");
    expect_refused(member(kAlice, kDave, "invite",
                          R"("third_party_invite":{"signed":{"mxid":"@dave:b.test"}})"),
                   "4.4.1.3");
}

TEST_P(ThirdPartyInvite, Rule4_4_1_4_MxidMustBeTarget) {
    add_invite_event();
    expect_refused(invite("@erin:b.test", "tok"), "4.4.1.4");
}

TEST_P(ThirdPartyInvite, Rule4_4_1_5_InviteEventMustExist) {
    add_invite_event();
    expect_refused(invite(kDave, "other-token"), "4.4.1.5");
}

TEST_P(ThirdPartyInvite, Rule4_4_1_6_SenderMustHaveSentTheInviteEvent) {
    add_invite_event(kBob);
    expect_refused(invite(kDave, "tok"), "4.4.1.6");
}

TEST_P(ThirdPartyInvite, Rule4_4_1_8_NoMatchingSignatureRefused) {
    add_invite_event();
    expect_refused(invite(kDave, "tok", /*sign=*/false), "4.4.1.8");
    json::object tampered = invite(kDave, "tok");
    tampered["content"]
        .as_object()["third_party_invite"]
        .as_object()["signed"]
        .as_object()["extra"] = 1;
    expect_refused(tampered, "4.4.1.8");
}

TEST_P(Authorization, Rule4_5_1_LeaveOneself) {
    expect_allowed(member(kCarol, kCarol, "leave"), "4.5.1");  // joined
    set_membership(kDave, "invite");
    expect_allowed(member(kDave, kDave, "leave"), "4.5.1");  // reject invite
    set_membership(kDave, "knock");
    expect_allowed(member(kDave, kDave, "leave"), "4.5.1");  // retract knock
    set_membership(kDave, "leave");
    expect_refused(member(kDave, kDave, "leave"), "4.5.1");
    set_membership(kDave, "ban");
    expect_refused(member(kDave, kDave, "leave"), "4.5.1");  // no self-unban
}

TEST_P(Authorization, Rule4_5_2_KickerMustBeJoined) {
    put(member(kBob, kBob, "leave"));
    expect_refused(member(kBob, kCarol, "leave"), "4.5.2");
}

TEST_P(Authorization, Rule4_5_3_UnbanNeedsBanLevel) {
    set_membership(kDave, "ban");
    put(pdu("m.room.power_levels", kAlice,
            R"({"users":{"@alice:a.test":100,"@bob:a.test":50},"kick":50,"ban":60})", ""));
    expect_refused(member(kBob, kDave, "leave"), "4.5.3");
    expect_allowed(member(kAlice, kDave, "leave"), "4.5.4");
}

TEST_P(Authorization, Rule4_5_4_KickNeedsKickLevelAndHigherThanTarget) {
    expect_allowed(member(kBob, kCarol, "leave"), "4.5.4");
    expect_refused(member(kCarol, kBob, "leave"), "4.5.5");  // level 0 < kick 50
    put(pdu("m.room.power_levels", kAlice,
            R"({"users":{"@alice:a.test":100,"@bob:a.test":50,"@carol:b.test":50}})", ""));
    expect_refused(member(kBob, kCarol, "leave"), "4.5.5");  // equal levels
    expect_allowed(member(kAlice, kBob, "leave"), "4.5.4");
}

TEST_P(Authorization, Rule4_6_Ban) {
    expect_allowed(member(kBob, kCarol, "ban"), "4.6.2");
    expect_allowed(member(kBob, kDave, "ban"), "4.6.2");    // pre-emptive ban of a non-member
    expect_refused(member(kCarol, kDave, "ban"), "4.6.3");  // level 0 < 50
    expect_refused(member(kBob, kAlice, "ban"), "4.6.3");   // target higher
    expect_refused(member(kDave, kCarol, "ban"), "4.6.1");  // not joined
}

TEST_P(Authorization, Rule4_7_Knock) {
    expect_refused(member(kDave, kDave, "knock"), "4.7.1");  // public room
    for (const char* rule : {"knock", "knock_restricted"}) {
        set_join_rule(rule);
        set_membership(kDave, "leave");
        expect_refused(member(kAlice, kDave, "knock"), "4.7.2");
        expect_allowed(member(kDave, kDave, "knock"), "4.7.3");
        for (const char* m : {"ban", "invite", "join"}) {
            set_membership(kDave, m);
            expect_refused(member(kDave, kDave, "knock"), "4.7.4");
        }
    }
    set_join_rule("invite");
    set_membership(kDave, "leave");
    expect_refused(member(kDave, kDave, "knock"), "4.7.1");
}

TEST_P(Authorization, Rule4_8_UnknownMembershipRefused) {
    expect_refused(member(kCarol, kCarol, "dance"), "4.8");
}

// ---- Rules 5 to 8 ----

TEST_P(Authorization, Rule5_SenderMustBeJoined) {
    expect_refused(pdu("m.room.message", kDave, R"({"body":"hi"})"), "5");
    set_membership(kDave, "invite");
    expect_refused(pdu("m.room.message", kDave, R"({"body":"hi"})"), "5");
    expect_allowed(pdu("m.room.message", kCarol, R"({"body":"hi"})"), "10");
}

TEST_P(Authorization, Rule6_ThirdPartyInviteEventNeedsInviteLevel) {
    expect_allowed(pdu("m.room.third_party_invite", kCarol, "{}", "tok"), "6.1");
    put(pdu("m.room.power_levels", kAlice,
            R"({"users":{"@alice:a.test":100,"@bob:a.test":50},"invite":10})", ""));
    expect_refused(pdu("m.room.third_party_invite", kCarol, "{}", "tok"), "6.1");
    expect_allowed(pdu("m.room.third_party_invite", kBob, "{}", "tok"), "6.1");
}

TEST_P(Authorization, Rule7_RequiredPowerLevel) {
    // events[type] for both kinds.
    expect_refused(pdu("m.room.name", kCarol, R"({"name":"x"})", ""), "7");
    expect_allowed(pdu("m.room.name", kBob, R"({"name":"x"})", ""), "10");
    // state_default for other state events, events_default for messages.
    expect_refused(pdu("m.room.topic", kCarol, R"({"topic":"x"})", ""), "7");
    expect_allowed(pdu("m.room.topic", kBob, R"({"topic":"x"})", ""), "10");
    expect_allowed(pdu("m.room.message", kCarol, "{}"), "10");
    put(pdu("m.room.power_levels", kAlice,
            R"({"users":{"@alice:a.test":100,"@bob:a.test":50},"events_default":10})", ""));
    expect_refused(pdu("m.room.message", kCarol, "{}"), "7");
    // Redactions are ordinary events here (events_default unless listed).
    expect_refused(pdu("m.room.redaction", kCarol, R"({"redacts":"$x"})"), "7");
    expect_allowed(pdu("m.room.redaction", kBob, R"({"redacts":"$x"})"), "10");
}

TEST_P(Authorization, Rule7_DefaultsWithoutPowerLevelsEvent) {
    AuthState s;
    s.put("$create", create_event());
    s.put("$a", member(kAlice, kAlice, "join"));
    s.put("$c", member(kCarol, kCarol, "join"));
    auto decide = [&](const json::object& e) { return authorize(e, version(), s, keys_); };
    // Creator 100, others 0; state needs 50, messages 0.
    EXPECT_EQ(decide(pdu("m.room.topic", kAlice, "{}", "")).rule, "10");
    EXPECT_EQ(decide(pdu("m.room.topic", kCarol, "{}", "")).rule, "7");
    EXPECT_EQ(decide(pdu("m.room.message", kCarol, "{}")).rule, "10");
    const PowerLevels levels(s, version());
    EXPECT_EQ(levels.user_level(kAlice), 100);
    EXPECT_EQ(levels.user_level(kCarol), 0);
    EXPECT_EQ(levels.invite(), 0);
    EXPECT_EQ(levels.kick(), 50);
    EXPECT_EQ(levels.ban(), 50);
    EXPECT_EQ(levels.redact(), 50);
}

TEST_P(Authorization, Rule8_StateKeysOfOtherUsersRefused) {
    put(pdu("m.room.power_levels", kAlice,
            R"({"users":{"@alice:a.test":100,"@bob:a.test":50},"state_default":0})", ""));
    expect_refused(pdu("org.example.profile", kCarol, "{}", kBob), "8");
    expect_allowed(pdu("org.example.profile", kCarol, "{}", kCarol), "10");
    expect_allowed(pdu("org.example.profile", kCarol, "{}", "not-a-user"), "10");
    expect_refused(pdu("org.example.profile", kAlice, "{}", kCarol), "8");  // not even admins
}

// ---- Rule 9: m.room.power_levels ----

class PowerLevelsRules : public Authorization {
protected:
    json::object change(std::string_view sender, std::string_view content) {
        return pdu("m.room.power_levels", sender, content, "");
    }
    // Bob (50) may send power levels in these tests.
    void SetUp() override {
        Authorization::SetUp();
        put(pdu("m.room.power_levels", kAlice, kBase, ""));
    }
    static constexpr const char* kBase =
        R"({"users":{"@alice:a.test":100,"@bob:a.test":50,"@carol:b.test":10},
            "users_default":0,"events":{"m.room.name":50,"m.room.power_levels":50,
            "m.room.tombstone":100},"events_default":0,"state_default":50,"ban":50,"kick":50,
            "redact":50,"invite":0,"notifications":{"room":50}})";
    std::string base_with(std::string_view key, std::string_view value) {
        json::object o = json::parse(kBase).as_object();
        o[key] = json::parse(value);
        return json::serialize(o);
    }
};

INSTANTIATE_TEST_SUITE_P(RoomVersions, PowerLevelsRules,
                         ::testing::Values(&kRoomVersion10, &kRoomVersion11), version_name);

TEST_P(PowerLevelsRules, Rule9_1_NamedLevelsMustBeIntegers) {
    for (const char* key :
         {"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}) {
        expect_refused(change(kAlice, base_with(key, R"("50")")), "9.1");  // v10: no strings
        expect_refused(change(kAlice, base_with(key, "null")), "9.1");
        expect_refused(change(kAlice, base_with(key, "[50]")), "9.1");
    }
    expect_allowed(change(kAlice, kBase), "9.10");
}

TEST_P(PowerLevelsRules, Rule9_2_EventsAndNotificationsMustBeObjectsOfIntegers) {
    for (const char* key : {"events", "notifications"}) {
        expect_refused(change(kAlice, base_with(key, R"({"x":"50"})")), "9.2");
        expect_refused(change(kAlice, base_with(key, "[]")), "9.2");
        expect_refused(change(kAlice, base_with(key, "5")), "9.2");
    }
}

TEST_P(PowerLevelsRules, Rule9_3_UsersMustMapUserIdsToIntegers) {
    expect_refused(change(kAlice, base_with("users", R"({"@alice:a.test":"100"})")), "9.3");
    expect_refused(change(kAlice, base_with("users", R"({"alice":100,"@alice:a.test":100})")),
                   "9.3");
    expect_refused(change(kAlice, base_with("users", R"({"@:a.test":100})")), "9.3");
    expect_refused(change(kAlice, base_with("users", "[]")), "9.3");
    expect_allowed(change(kAlice, base_with("users", R"({"@alice:a.test":100,"@x:[::1]:8448":1})")),
                   "9.10");
}

TEST_P(PowerLevelsRules, Rule9_4_FirstPowerLevelsEventAllowed) {
    AuthState s;
    s.put("$create", create_event());
    s.put("$a", member(kAlice, kAlice, "join"));
    const AuthDecision d =
        authorize(change(kAlice, R"({"users":{"@alice:a.test":100,"@bob:a.test":1000}})"),
                  version(), s, keys_);
    EXPECT_TRUE(d.allowed) << d.reason;
    EXPECT_EQ(d.rule, "9.4");
}

TEST_P(PowerLevelsRules, Rule9_5_NamedLevelChanges) {
    // Bob (50) can lower or raise to his own level, not above, and cannot touch one above.
    expect_allowed(change(kBob, base_with("kick", "40")), "9.10");
    expect_allowed(change(kBob, base_with("invite", "50")), "9.10");
    expect_refused(change(kBob, base_with("ban", "51")), "9.5.2");
    put(change(kAlice, base_with("redact", "60")));
    expect_refused(change(kBob, base_with("redact", "40")), "9.5.1");
    // Removal counts as a change of the current value.
    json::object removed = json::parse(kBase).as_object();
    removed.erase("redact");
    expect_refused(change(kBob, json::serialize(removed)), "9.5.1");
    // Adding a key that was absent: only the new value counts.
    json::object base = json::parse(kBase).as_object();
    base.erase("users_default");
    put(change(kAlice, json::serialize(base)));
    expect_allowed(change(kBob, base_with("users_default", "50")), "9.10");
    expect_refused(change(kBob, base_with("users_default", "51")), "9.5.2");
}

TEST_P(PowerLevelsRules, Rule9_6_EventsAndNotificationsChangedOrRemovedFromAbove) {
    json::object o = json::parse(kBase).as_object();
    o["events"].as_object().erase("m.room.tombstone");  // current 100 > 50
    expect_refused(change(kBob, json::serialize(o)), "9.6");
    o = json::parse(kBase).as_object();
    o["events"].as_object()["m.room.tombstone"] = 40;
    expect_refused(change(kBob, json::serialize(o)), "9.6");
    put(change(kAlice, base_with("notifications", R"({"room":80})")));
    expect_refused(change(kBob, base_with("notifications", R"({"room":10})")), "9.6");
    // Unchanged entries above the sender's level are fine.
    expect_allowed(change(kBob, base_with("notifications", R"({"room":80,"x":1})")), "9.10");
}

TEST_P(PowerLevelsRules, Rule9_7_EventsAndNotificationsAddedOrChangedAbove) {
    json::object o = json::parse(kBase).as_object();
    o["events"].as_object()["m.room.topic"] = 51;
    expect_refused(change(kBob, json::serialize(o)), "9.7");
    o["events"].as_object()["m.room.topic"] = 50;
    expect_allowed(change(kBob, json::serialize(o)), "9.10");
    expect_refused(change(kBob, base_with("notifications", R"({"room":51})")), "9.7");
    expect_allowed(change(kBob, base_with("notifications", R"({"room":30})")), "9.10");
}

TEST_P(PowerLevelsRules, Rule9_8_UsersAtOrAboveSenderCannotBeChanged) {
    // Alice (100) is above Bob.
    expect_refused(change(kBob, base_with("users", R"({"@alice:a.test":0,"@bob:a.test":50,
        "@carol:b.test":10})")),
                   "9.8");
    // A peer at the same level cannot be demoted or removed.
    put(change(kAlice, base_with("users", R"({"@alice:a.test":100,"@bob:a.test":50,
        "@carol:b.test":50})")));
    expect_refused(change(kBob, base_with("users", R"({"@alice:a.test":100,"@bob:a.test":50,
        "@carol:b.test":0})")),
                   "9.8");
    expect_refused(change(kBob, base_with("users", R"({"@alice:a.test":100,"@bob:a.test":50})")),
                   "9.8");
    // One's own entry may be lowered.
    expect_allowed(change(kBob, base_with("users", R"({"@alice:a.test":100,"@bob:a.test":10,
        "@carol:b.test":50})")),
                   "9.10");
}

TEST_P(PowerLevelsRules, Rule9_9_UsersCannotBeRaisedAboveSender) {
    expect_refused(change(kBob, base_with("users", R"({"@alice:a.test":100,"@bob:a.test":50,
        "@carol:b.test":51})")),
                   "9.9");
    expect_refused(change(kBob, base_with("users", R"({"@alice:a.test":100,"@bob:a.test":60,
        "@carol:b.test":10})")),
                   "9.9");
    expect_allowed(change(kBob, base_with("users", R"({"@alice:a.test":100,"@bob:a.test":50,
        "@carol:b.test":50,"@dave:b.test":50})")),
                   "9.10");
    // Carol (10) lacks the level to send power levels at all (rule 7).
    expect_refused(change(kCarol, kBase), "7");
}

TEST_P(Authorization, Rule10_OtherEventsAllowed) {
    expect_allowed(pdu("m.room.message", kCarol, R"({"body":"hello","msgtype":"m.text"})"), "10");
    expect_allowed(pdu("m.room.name", kAlice, R"({"name":"n"})", ""), "10");
}

// ---- Redactions ----

TEST_P(Authorization, RedactionsAppliedWithRedactLevelOrSameServer) {
    const json::object original = pdu("m.room.message", kCarol, R"({"body":"x"})");
    json::object redaction = pdu("m.room.redaction", kBob, "{}");
    EXPECT_TRUE(may_apply_redaction(redaction, original, version(), state_));  // 50 >= 50
    redaction["sender"] = "@mallory:c.test";
    EXPECT_FALSE(may_apply_redaction(redaction, original, version(), state_));
    redaction["sender"] = "@other:b.test";  // same server as Carol
    EXPECT_TRUE(may_apply_redaction(redaction, original, version(), state_));
    redaction["sender"] = kCarol;  // own event
    EXPECT_TRUE(may_apply_redaction(redaction, original, version(), state_));
}

TEST_P(Authorization, RedactsLivesWhereTheVersionPutsIt) {
    json::object r = pdu("m.room.redaction", kBob, R"({"redacts":"$in_content"})");
    r["redacts"] = "$top_level";
    EXPECT_EQ(redacted_event_id(r, version()),
              version().redacts_in_content ? "$in_content" : "$top_level");
}

}  // namespace
}  // namespace myelin::events
