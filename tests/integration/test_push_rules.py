"""Black-box tests of push rules (pushrules.yaml; push.md "Predefined Rules"): GET /pushrules/ and
/pushrules/global/ with the spec's server-default rules, user rules per user (PUT with
before/after, DELETE), enabled and actions of user and server-default rules, and the errors:
404 M_NOT_FOUND for unknown rules, 400 for invalid ones, server-default rules neither replaced
nor deleted. Every answer is validated against the spec's schemas."""

from __future__ import annotations

import pytest

from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import PREFIXES, V3, bearer, register_ok, show, unique_name

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
SPEC = "pushrules.yaml"

DEFAULT_OVERRIDE = [".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
                    ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.is_room_mention",
                    ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
                    ".m.rule.suppress_edits"]
DEFAULT_UNDERRIDE = [".m.rule.call", ".m.rule.encrypted_room_one_to_one",
                     ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"]


def ids(rules: list[dict]) -> list[str]:
    return [r["rule_id"] for r in rules]


def ruleset(server, token: str, prefix: str = V3) -> dict:
    r = server.get(prefix + "/pushrules/", headers=bearer(token))
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, prefix + "/pushrules/", "get", 200)
    return r.json()["global"]


def rule_path(kind: str, rule_id: str, prefix: str = V3) -> str:
    return f"{prefix}/pushrules/global/{kind}/{rule_id}"


@prefixes
def test_server_default_rules(shared_server, prefix):
    s = register_ok(shared_server, unique_name("push"))
    rules = ruleset(shared_server, s.access_token, prefix)
    assert ids(rules["override"]) == DEFAULT_OVERRIDE
    assert ids(rules["underride"]) == DEFAULT_UNDERRIDE
    assert rules["content"] == [] and rules["room"] == [] and rules["sender"] == []
    master = rules["override"][0]
    assert master == {"rule_id": ".m.rule.master", "default": True, "enabled": False,
                      "conditions": [], "actions": []}
    invite = rules["override"][2]
    assert {"key": "state_key", "kind": "event_match", "pattern": s.user_id} in invite["conditions"]
    mention = rules["override"][4]
    assert mention["conditions"][0]["value"] == s.user_id
    assert mention["conditions"][0]["key"] == "content.m\\.mentions.user_ids"
    assert all(r["default"] is True for k in rules.values() for r in k)

    r = shared_server.get(prefix + "/pushrules/global/", headers=bearer(s.access_token))
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, prefix + "/pushrules/global/", "get", 200)
    assert r.json() == rules

    r = shared_server.get(rule_path("underride", ".m.rule.message", prefix),
                          headers=bearer(s.access_token))
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, prefix + "/pushrules/global/underride/.m.rule.message",
                        "get", 200)
    assert r.json()["actions"] == ["notify"]
    assert_matrix_error(shared_server.get(prefix + "/pushrules/"), 401, "M_MISSING_TOKEN")


def test_user_rules_are_ordered_and_per_user(shared_server):
    s = register_ok(shared_server, unique_name("push"))
    other = register_ok(shared_server, unique_name("push"))
    h = bearer(s.access_token)
    r = shared_server.put(rule_path("content", "cake"), headers=h,
                          json={"pattern": "cake*lie", "actions": ["notify"]})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, V3 + "/pushrules/global/content/cake", "put", 200)
    # A new rule without before/after goes first among the user's rules of its kind.
    assert shared_server.put(rule_path("content", "pie"), headers=h,
                             json={"pattern": "pie", "actions": ["dont_notify"]}).status_code == 200
    assert shared_server.put(rule_path("content", "tea"), headers=h, params={"after": "cake"},
                             json={"pattern": "tea", "actions": []}).status_code == 200
    assert shared_server.put(rule_path("content", "jam"), headers=h, params={"before": "pie"},
                             json={"pattern": "jam", "actions": []}).status_code == 200
    content = ruleset(shared_server, s.access_token)["content"]
    assert ids(content) == ["jam", "pie", "cake", "tea"]
    cake = content[2]
    assert cake == {"rule_id": "cake", "default": False, "enabled": True, "pattern": "cake*lie",
                    "actions": ["notify"]}

    cond = [{"kind": "event_match", "key": "content.body", "pattern": "hello"}]
    assert shared_server.put(rule_path("override", "hello"), headers=h,
                             json={"conditions": cond, "actions": ["notify", {"set_tweak": "highlight"}]}
                             ).status_code == 200
    override = ruleset(shared_server, s.access_token)["override"]
    # .m.rule.master stays first, then the user's rules, then the other defaults.
    assert ids(override) == [".m.rule.master", "hello"] + DEFAULT_OVERRIDE[1:]
    assert override[1]["conditions"] == cond

    assert shared_server.put(rule_path("room", "!abc:localhost"), headers=h,
                             json={"actions": ["dont_notify"]}).status_code == 200
    assert shared_server.put(rule_path("sender", "@bob:localhost"), headers=h,
                             json={"actions": []}).status_code == 200
    rules = ruleset(shared_server, s.access_token)
    assert ids(rules["room"]) == ["!abc:localhost"]
    assert ids(rules["sender"]) == ["@bob:localhost"]

    # Replacing keeps the place; another user sees none of it.
    assert shared_server.put(rule_path("content", "pie"), headers=h,
                             json={"pattern": "apple pie", "actions": ["notify"]}).status_code == 200
    content = ruleset(shared_server, s.access_token)["content"]
    assert ids(content) == ["jam", "pie", "cake", "tea"] and content[1]["pattern"] == "apple pie"
    assert ruleset(shared_server, other.access_token)["content"] == []

    r = shared_server.delete(rule_path("content", "pie"), headers=h)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, V3 + "/pushrules/global/content/pie", "delete", 200)
    assert ids(ruleset(shared_server, s.access_token)["content"]) == ["jam", "cake", "tea"]
    r = shared_server.get(rule_path("content", "pie"), headers=h)
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    assert_matches_spec(r.json(), SPEC, V3 + "/pushrules/global/content/pie", "get", 404)
    assert_matrix_error(shared_server.delete(rule_path("content", "pie"), headers=h), 404,
                        "M_NOT_FOUND")


def test_enabled_and_actions(shared_server):
    s = register_ok(shared_server, unique_name("push"))
    h = bearer(s.access_token)
    master = rule_path("override", ".m.rule.master")
    r = shared_server.get(master + "/enabled", headers=h)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, master + "/enabled", "get", 200)
    assert r.json() == {"enabled": False}
    r = shared_server.put(master + "/enabled", headers=h, json={"enabled": True})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, master + "/enabled", "put", 200)
    assert shared_server.get(master + "/enabled", headers=h).json() == {"enabled": True}
    assert ruleset(shared_server, s.access_token)["override"][0]["enabled"] is True

    message = rule_path("underride", ".m.rule.message")
    r = shared_server.put(message + "/actions", headers=h,
                          json={"actions": ["notify", {"set_tweak": "sound", "value": "default"}]})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, message + "/actions", "put", 200)
    r = shared_server.get(message + "/actions", headers=h)
    assert_matches_spec(r.json(), SPEC, message + "/actions", "get", 200)
    assert r.json() == {"actions": ["notify", {"set_tweak": "sound", "value": "default"}]}
    rule = shared_server.get(message, headers=h).json()
    assert rule["default"] is True and rule["conditions"][0]["pattern"] == "m.room.message"

    assert shared_server.put(rule_path("content", "x"), headers=h,
                             json={"pattern": "x", "actions": ["notify"]}).status_code == 200
    assert shared_server.put(rule_path("content", "x") + "/enabled", headers=h,
                             json={"enabled": False}).status_code == 200
    assert shared_server.put(rule_path("content", "x") + "/actions", headers=h,
                             json={"actions": []}).status_code == 200
    x = shared_server.get(rule_path("content", "x"), headers=h).json()
    assert x["enabled"] is False and x["actions"] == []
    # Replacing a rule keeps its enabled flag.
    assert shared_server.put(rule_path("content", "x"), headers=h,
                             json={"pattern": "y", "actions": ["notify"]}).status_code == 200
    assert shared_server.get(rule_path("content", "x"), headers=h).json()["enabled"] is False

    for sub, body in (("/enabled", {"enabled": True}), ("/actions", {"actions": []})):
        r = shared_server.put(rule_path("override", "nosuch") + sub, headers=h, json=body)
        assert_matrix_error(r, 404, "M_NOT_FOUND")
        assert_matrix_error(shared_server.get(rule_path("override", "nosuch") + sub, headers=h),
                            404, "M_NOT_FOUND")
    assert_matrix_error(shared_server.put(master + "/enabled", headers=h, json={}), 400,
                        "M_MISSING_PARAM")
    assert_matrix_error(shared_server.put(master + "/enabled", headers=h,
                                          json={"enabled": "yes"}), 400, "M_BAD_JSON")
    assert_matrix_error(shared_server.put(master + "/actions", headers=h,
                                          json={"actions": ["explode"]}), 400, "M_BAD_JSON")


@pytest.mark.parametrize("kind,rule_id,body,status,errcode", [
    ("content", ".mine", {"pattern": "a", "actions": []}, 400, "M_INVALID_PARAM"),
    ("override", ".m.rule.master", {"actions": []}, 400, "M_INVALID_PARAM"),
    ("content", "a\\b", {"pattern": "a", "actions": []}, 400, "M_INVALID_PARAM"),
    ("content", "nopattern", {"actions": []}, 400, "M_MISSING_PARAM"),
    ("content", "badpattern", {"pattern": 5, "actions": []}, 400, "M_BAD_JSON"),
    ("override", "noactions", {"conditions": []}, 400, "M_MISSING_PARAM"),
    ("override", "badactions", {"actions": "notify"}, 400, "M_BAD_JSON"),
    ("override", "badaction", {"actions": [{"tweak": 1}]}, 400, "M_BAD_JSON"),
    ("override", "badcond", {"actions": [], "conditions": [{"key": "x"}]}, 400, "M_BAD_JSON"),
    ("room", "notaroom", {"actions": []}, 400, "M_INVALID_PARAM"),
    ("sender", "notauser", {"actions": []}, 400, "M_INVALID_PARAM"),
    ("nosuchkind", "x", {"actions": []}, 400, "M_INVALID_PARAM"),
])
def test_invalid_rules_are_refused(shared_server, kind, rule_id, body, status, errcode):
    s = register_ok(shared_server, unique_name("push"))
    r = shared_server.put(rule_path(kind, rule_id), headers=bearer(s.access_token), json=body)
    assert_matrix_error(r, status, errcode)
    assert ruleset(shared_server, s.access_token)["content"] == []


def test_defaults_cannot_be_deleted_and_anchors_must_be_user_rules(shared_server):
    s = register_ok(shared_server, unique_name("push"))
    h = bearer(s.access_token)
    assert_matrix_error(shared_server.delete(rule_path("override", ".m.rule.master"), headers=h),
                        400, "M_INVALID_PARAM")
    assert_matrix_error(shared_server.put(rule_path("override", "a"), headers=h,
                                          params={"before": ".m.rule.master"},
                                          json={"actions": []}), 400, "M_INVALID_PARAM")
    assert_matrix_error(shared_server.put(rule_path("override", "a"), headers=h,
                                          params={"after": "nosuch"}, json={"actions": []}),
                        404, "M_NOT_FOUND")
    assert_matrix_error(shared_server.get(rule_path("nosuchkind", "a"), headers=h), 400,
                        "M_INVALID_PARAM")
    assert_matrix_error(shared_server.put(rule_path("override", "a"), headers=h, data="{"), 400,
                        "M_NOT_JSON")
    assert ids(ruleset(shared_server, s.access_token)["override"]) == DEFAULT_OVERRIDE


def test_rules_survive_a_restart(server_factory):
    server = server_factory()
    s = register_ok(server, unique_name("push"))
    h = bearer(s.access_token)
    assert server.put(rule_path("content", "keep"), headers=h,
                      json={"pattern": "keep", "actions": ["notify"]}).status_code == 200
    assert server.put(rule_path("override", ".m.rule.master") + "/enabled", headers=h,
                      json={"enabled": True}).status_code == 200
    server.restart()
    rules = ruleset(server, s.access_token)
    assert ids(rules["content"]) == ["keep"]
    assert rules["override"][0]["enabled"] is True
