#include "myelin/events/event_hashing.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "myelin/events/base64.hpp"
#include "myelin/events/event_signing.hpp"
#include "myelin/events/redaction.hpp"

#include "spec_vectors.hpp"

namespace myelin::events {
namespace {

namespace json = boost::json;

json::object parse(std::string_view text) { return json::parse(text).get_object(); }

// Spec appendix "Cryptographic Test Vectors", "Event Signing": the minimally-sized event. The
// vectors predate room versions 10 and 11; their redaction keeps `origin` (and, for the second,
// `event_id`), as room version 10's does.
TEST(EventSigning, SpecVectorMinimalEvent) {
    json::object event = parse(R"({
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "signatures": {},
        "hashes": {},
        "type": "X",
        "content": {},
        "prev_events": [],
        "auth_events": [],
        "depth": 3,
        "unsigned": {
            "age_ts": 1000000
        }
    })");
    ASSERT_TRUE(hash_and_sign_event(event, kRoomVersion10, "domain", test::spec_signing_key()));
    EXPECT_EQ(event, parse(R"({
        "auth_events": [],
        "content": {},
        "depth": 3,
        "hashes": {
            "sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
        },
        "origin": "domain",
        "origin_server_ts": 1000000,
        "prev_events": [],
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "signatures": {
            "domain": {
                "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
            }
        },
        "type": "X",
        "unsigned": {
            "age_ts": 1000000
        }
    })"));
    EXPECT_TRUE(content_hash_matches(event));
    VerifyKeys keys;
    keys.add("domain", "ed25519:1", test::spec_signing_key().public_key());
    EXPECT_TRUE(verify_event_signature(event, kRoomVersion10, "domain", keys));
}

// The same section: an event with redactable content.
TEST(EventSigning, SpecVectorRedactableEvent) {
    json::object event = parse(R"({
        "content": {
            "body": "Here is the message content"
        },
        "event_id": "$0:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "signatures": {},
        "unsigned": {
            "age_ts": 1000000
        }
    })");
    ASSERT_TRUE(hash_and_sign_event(event, kRoomVersion10, "domain", test::spec_signing_key()));
    EXPECT_EQ(event, parse(R"({
        "content": {
            "body": "Here is the message content"
        },
        "event_id": "$0:domain",
        "hashes": {
            "sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
        },
        "origin": "domain",
        "origin_server_ts": 1000000,
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "signatures": {
            "domain": {
                "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
            }
        },
        "unsigned": {
            "age_ts": 1000000
        }
    })"));

    // The signature still checks on a redacted copy; the content hash no longer matches it.
    VerifyKeys keys;
    keys.add("domain", "ed25519:1", test::spec_signing_key().public_key());
    const json::object redacted = redact(event, kRoomVersion10);
    EXPECT_TRUE(verify_event_signature(redacted, kRoomVersion10, "domain", keys));
    EXPECT_TRUE(content_hash_matches(event));
    EXPECT_FALSE(content_hash_matches(redacted));
    // Altering a redactable key breaks the hash, not the signature; altering a kept key breaks
    // the signature.
    json::object altered = event;
    altered["content"].as_object()["body"] = "changed";
    EXPECT_FALSE(content_hash_matches(altered));
    EXPECT_TRUE(verify_event_signature(altered, kRoomVersion10, "domain", keys));
    altered["sender"] = "@v:domain";
    EXPECT_FALSE(verify_event_signature(altered, kRoomVersion10, "domain", keys));
}

TEST(EventSigning, KeepsOtherServersSignaturesAndRefusesNonCanonical) {
    json::object event = parse(R"({"type":"X","content":{},"room_id":"!r:a","sender":"@u:a",
        "signatures":{"other":{"ed25519:z":"sig"}}})");
    ASSERT_TRUE(hash_and_sign_event(event, kRoomVersion11, "domain", test::spec_signing_key()));
    EXPECT_TRUE(event.at("signatures").as_object().contains("other"));
    EXPECT_TRUE(event.at("signatures").as_object().contains("domain"));

    json::object floaty = parse(R"({"type":"X","content":{"n":0.5}})");
    const json::object before = floaty;
    EXPECT_FALSE(hash_and_sign_event(floaty, kRoomVersion11, "domain", test::spec_signing_key()));
    EXPECT_EQ(floaty, before);
}

TEST(ContentHash, IgnoresUnsignedSignaturesAndHashes) {
    const json::object a = parse(R"({"type":"X","content":{"a":1}})");
    const json::object b = parse(R"({"type":"X","content":{"a":1},"unsigned":{"x":1},
        "signatures":{"s":{}},"hashes":{"sha256":"junk"}})");
    EXPECT_EQ(*content_hash(a), *content_hash(b));
    EXPECT_NE(*content_hash(a), *content_hash(parse(R"({"type":"X","content":{"a":2}})")));
    EXPECT_FALSE(content_hash_matches(a));  // no hashes at all
}

TEST(ReferenceHash, EventIdIsUrlSafeBase64OfTheRedactedEvent) {
    json::object event = parse(R"({
        "auth_events": [], "content": {"body": "hi"}, "depth": 1, "origin_server_ts": 5,
        "prev_events": [], "room_id": "!r:a", "sender": "@u:a", "type": "m.room.message",
        "hashes": {"sha256": "abc"}
    })");
    auto id = compute_event_id(event, kRoomVersion11);
    ASSERT_TRUE(id);
    ASSERT_EQ(id->size(), 44U);  // "$" + 43 characters for 32 bytes
    EXPECT_EQ((*id)[0], '$');
    EXPECT_EQ(id->find_first_of("+/="), std::string::npos);
    const Sha256 ref = *reference_hash(event, kRoomVersion11);
    EXPECT_EQ(id->substr(1), encode_base64_url(ref));

    // Not covered: redacted-away content, signatures, unsigned, age_ts.
    json::object other = event;
    other["content"].as_object()["body"] = "bye";
    other["signatures"] = json::object{{"a", json::object{}}};
    other["unsigned"] = json::object{{"age", 1}};
    other["age_ts"] = 7;
    EXPECT_EQ(*compute_event_id(other, kRoomVersion11), *id);
    // Covered: hashes and kept keys.
    json::object rehashed = event;
    rehashed["hashes"] = json::object{{"sha256", "abd"}};
    EXPECT_NE(*compute_event_id(rehashed, kRoomVersion11), *id);
    json::object later = event;
    later["origin_server_ts"] = 6;
    EXPECT_NE(*compute_event_id(later, kRoomVersion11), *id);
}

TEST(ReferenceHash, OriginCountsInVersion10NotIn11) {
    const json::object event = parse(R"({"type":"X","content":{},"room_id":"!r:a",
        "sender":"@u:a","origin":"a"})");
    json::object other = event;
    other["origin"] = "b";
    EXPECT_NE(*compute_event_id(event, kRoomVersion10), *compute_event_id(other, kRoomVersion10));
    EXPECT_EQ(*compute_event_id(event, kRoomVersion11), *compute_event_id(other, kRoomVersion11));
}

// Redaction algorithm, room version 10 (the v9 rules).
TEST(Redaction, Version10TopLevelAndContent) {
    const json::object event = parse(R"({
        "event_id": "$e", "type": "m.room.member", "room_id": "!r:a", "sender": "@u:a",
        "state_key": "@u:a", "hashes": {"sha256": "h"}, "signatures": {"a": {}}, "depth": 4,
        "prev_events": ["$p"], "prev_state": [], "auth_events": ["$c"], "origin": "a",
        "origin_server_ts": 9, "membership": "join", "unsigned": {"age": 1}, "extra": true,
        "content": {"membership": "join", "join_authorised_via_users_server": "@x:a",
                    "displayname": "U", "third_party_invite": {"signed": {}}}
    })");
    const json::object r = redact(event, kRoomVersion10);
    for (const char* key : {"event_id", "type", "room_id", "sender", "state_key", "hashes",
                            "signatures", "depth", "prev_events", "prev_state", "auth_events",
                            "origin", "origin_server_ts", "membership", "content"}) {
        EXPECT_TRUE(r.contains(key)) << key;
    }
    EXPECT_FALSE(r.contains("unsigned"));
    EXPECT_FALSE(r.contains("extra"));
    EXPECT_EQ(r.at("content"),
              json::parse(R"({"membership":"join","join_authorised_via_users_server":"@x:a"})"));
}

TEST(Redaction, Version11DropsOriginMembershipPrevState) {
    const json::object event = parse(R"({"type":"m.room.message","content":{"body":"x"},
        "origin":"a","membership":"join","prev_state":[],"room_id":"!r:a","sender":"@u:a"})");
    const json::object r = redact(event, kRoomVersion11);
    EXPECT_FALSE(r.contains("origin"));
    EXPECT_FALSE(r.contains("membership"));
    EXPECT_FALSE(r.contains("prev_state"));
    EXPECT_EQ(r.at("content"), json::object{});
    EXPECT_EQ(r.at("room_id"), "!r:a");
}

struct ContentCase {
    const char* type;
    const char* content;
    const char* v10;
    const char* v11;
};

TEST(Redaction, ContentKeysPerTypeAndVersion) {
    const ContentCase cases[] = {
        {"m.room.member",
         R"({"membership":"invite","displayname":"d","join_authorised_via_users_server":"@a:b",
             "third_party_invite":{"display_name":"x","signed":{"mxid":"@a:b"}}})",
         R"({"membership":"invite","join_authorised_via_users_server":"@a:b"})",
         R"({"membership":"invite","join_authorised_via_users_server":"@a:b",
             "third_party_invite":{"signed":{"mxid":"@a:b"}}})"},
        {"m.room.member", R"({"membership":"invite","third_party_invite":{"display_name":"x"}})",
         R"({"membership":"invite"})", R"({"membership":"invite","third_party_invite":{}})"},
        {"m.room.create", R"({"creator":"@a:b","room_version":"10","m.federate":false})",
         R"({"creator":"@a:b"})", R"({"creator":"@a:b","room_version":"10","m.federate":false})"},
        {"m.room.join_rules", R"({"join_rule":"restricted","allow":[],"other":1})",
         R"({"join_rule":"restricted","allow":[]})", R"({"join_rule":"restricted","allow":[]})"},
        {"m.room.power_levels",
         R"({"ban":1,"events":{},"events_default":2,"kick":3,"redact":4,"state_default":5,
             "users":{},"users_default":6,"invite":7,"notifications":{"room":8}})",
         R"({"ban":1,"events":{},"events_default":2,"kick":3,"redact":4,"state_default":5,
             "users":{},"users_default":6})",
         R"({"ban":1,"events":{},"events_default":2,"kick":3,"redact":4,"state_default":5,
             "users":{},"users_default":6,"invite":7})"},
        {"m.room.history_visibility", R"({"history_visibility":"shared","x":1})",
         R"({"history_visibility":"shared"})", R"({"history_visibility":"shared"})"},
        {"m.room.redaction", R"({"redacts":"$x","reason":"spam"})", R"({})", R"({"redacts":"$x"})"},
        {"m.room.name", R"({"name":"n"})", R"({})", R"({})"},
        {"m.room.topic", R"({"topic":"t"})", R"({})", R"({})"},
    };
    for (const ContentCase& c : cases) {
        json::object event{{"type", c.type}, {"content", json::parse(c.content)}};
        EXPECT_EQ(redact(event, kRoomVersion10).at("content"), json::parse(c.v10))
            << c.type << " v10 " << c.content;
        EXPECT_EQ(redact(event, kRoomVersion11).at("content"), json::parse(c.v11))
            << c.type << " v11 " << c.content;
    }
}

TEST(Redaction, NonObjectContentBecomesEmpty) {
    const json::object event = parse(R"({"type":"m.room.member","content":"x"})");
    EXPECT_EQ(redact(event, kRoomVersion11).at("content"), json::object{});
}

}  // namespace
}  // namespace myelin::events
