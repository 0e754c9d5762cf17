#include "myelin/storage/transfer/table_rules.hpp"

#include <array>

namespace myelin::storage::transfer {

namespace {

constexpr TableRule copy(std::string_view name) { return {name, TableHandling::kCopy, {}}; }

constexpr TableRule skip(std::string_view name, std::string_view reason) {
    return {name, TableHandling::kSkip, reason};
}

// One line per table of the schema (both backends have the same tables). Order matters: the
// rows of a table are copied after those of every table it refers to.
constexpr std::array kRules{
    copy("users"),
    copy("devices"),
    copy("sessions"),
    copy("access_tokens"),   // refers to sessions
    copy("refresh_tokens"),  // refers to sessions
    copy("security_events"),
    copy("registration_tokens"),
    copy("revocation_log"),
    copy("revocation_log_pruned"),
    // Copied (not skipped as ephemeral): an unfinished session may hold a registration-token
    // reservation that the copied token's pending count includes.
    copy("uia_sessions"),
    // Issue #8 §1 (migration 7). The stream positions are copied so that no position is
    // handed out twice (a client's sync token would otherwise skip changes).
    copy("stream_positions"),
    copy("account_data"),
    copy("filters"),
    copy("profiles"),
    copy("device_keys"),
    copy("one_time_keys"),
    copy("fallback_keys"),
    copy("device_list_changes"),
    copy("to_device_txns"),
    copy("to_device_messages"),
    // Rooms and events (migration 8). Their position counter ('', 'events') is a row of
    // stream_positions, copied above: new events continue after the copied ones.
    copy("rooms"),
    copy("events"),  // refers to rooms
    copy("room_state"),
    copy("room_memberships"),
    copy("room_forward_extremities"),
    copy("room_transactions"),
    copy("room_aliases"),
    // Read receipts (migration 9); their position counter ('', 'receipts') is a row of
    // stream_positions, copied above.
    copy("receipts"),
    // Cross-signing (migration 10).
    copy("cross_signing_keys"),
    copy("key_signatures"),
    skip("schema_version", "written by the PostgreSQL migrations"),
    skip("rate_limit_buckets",
         "ephemeral, and used on PostgreSQL only; buckets refill by themselves"),
};

}  // namespace

std::span<const TableRule> table_rules() { return kRules; }

const TableRule* find_table_rule(std::string_view name) {
    for (const TableRule& rule : kRules) {
        if (rule.name == name) return &rule;
    }
    return nullptr;
}

}  // namespace myelin::storage::transfer
