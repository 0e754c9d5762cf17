#include "myelin/storage/postgres/pg_wake_channel.hpp"

#include <cstdint>
#include <random>
#include <utility>

#include "myelin/core/log.hpp"

namespace myelin::storage::pg {

namespace {

constexpr std::string_view kPayloadPrefix = "w1 ";
constexpr const char* kNotify = "SELECT pg_notify($1, $2)";

ConnectionSettings with_suffix(ConnectionSettings settings, std::string_view suffix) {
    settings.application_name += suffix;
    return settings;
}

std::string random_instance_id() {
    std::random_device device;
    const std::uint64_t value = (static_cast<std::uint64_t>(device()) << 32) ^ device();
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id(16, '0');
    for (int i = 0; i < 16; ++i)
        id[static_cast<std::size_t>(i)] = kHex[(value >> (60 - 4 * i)) & 0xf];
    return id;
}

bool carriable(std::string_view user_id) {
    return !user_id.empty() && user_id.find('\n') == std::string_view::npos &&
           user_id.find('\0') == std::string_view::npos;
}

}  // namespace

std::vector<std::string> wake_payloads(std::string_view instance_id,
                                       const std::vector<std::string>& user_ids,
                                       std::size_t max_bytes) {
    std::string head(kPayloadPrefix);
    head += instance_id;
    std::vector<std::string> payloads;
    std::string current = head;
    for (const auto& user_id : user_ids) {
        if (!carriable(user_id) || head.size() + 1 + user_id.size() > max_bytes) continue;
        if (current.size() + 1 + user_id.size() > max_bytes) {
            payloads.push_back(std::move(current));
            current = head;
        }
        current += '\n';
        current += user_id;
    }
    if (current.size() > head.size()) payloads.push_back(std::move(current));
    return payloads;
}

std::optional<WakeMessage> parse_wake_payload(std::string_view payload) {
    if (payload.substr(0, kPayloadPrefix.size()) != kPayloadPrefix) return std::nullopt;
    payload.remove_prefix(kPayloadPrefix.size());
    const auto end_of_id = payload.find('\n');
    WakeMessage message;
    message.instance_id = std::string(payload.substr(0, end_of_id));
    if (message.instance_id.empty() || message.instance_id.find(' ') != std::string::npos) {
        return std::nullopt;
    }
    if (end_of_id == std::string_view::npos) return std::nullopt;  // no user
    std::string_view rest = payload.substr(end_of_id + 1);
    while (true) {
        const auto next = rest.find('\n');
        const std::string_view user_id = rest.substr(0, next);
        if (user_id.empty()) return std::nullopt;
        message.user_ids.emplace_back(user_id);
        if (next == std::string_view::npos) break;
        rest.remove_prefix(next + 1);
    }
    return message;
}

PgWakeChannel::PgWakeChannel(ConnectionSettings settings)
    : publish_settings_(with_suffix(settings, "-wake-publish")),
      instance_id_(random_instance_id()),
      listener_(with_suffix(std::move(settings), "-wake-listen"), std::string(kWakeChannel),
                "wake channel") {}

PgWakeChannel::~PgWakeChannel() { stop(); }

Result<void> PgWakeChannel::start(WakeHandler on_wake, GapHandler on_gap) {
    auto publisher = Connection::open(publish_settings_);
    if (!publisher) return publisher.error();
    publisher_ = std::move(*publisher);
    auto on_payload = [on_wake = std::move(on_wake), self = instance_id_](std::string_view p) {
        auto message = parse_wake_payload(p);
        if (message && message->instance_id != self) on_wake(message->user_ids);
    };
    return listener_.start(std::move(on_payload), std::move(on_gap));
}

Result<int> PgWakeChannel::publish(const std::vector<std::string>& user_ids) {
    const auto payloads = wake_payloads(instance_id_, user_ids);
    if (payloads.empty()) return 0;
    if (!publisher_) {
        auto reopened = Connection::open(publish_settings_);
        if (!reopened) return reopened.error();
        publisher_ = std::move(*reopened);
        myelin::log::app()->info("postgresql: wake channel publisher reconnected");
    }
    int sent = 0;
    for (const auto& payload : payloads) {
        Params params;
        params.add_text(kWakeChannel).add_text(payload);
        auto r = publisher_->query(kNotify, params, "publishing a wake-up");
        if (!r) {
            // Reopened by the next call; a statement error on a live connection is a bug, but
            // a fresh connection is harmless then too.
            publisher_.reset();
            return r.error();
        }
        ++sent;
    }
    return sent;
}

void PgWakeChannel::stop() {
    listener_.stop();
    publisher_.reset();
}

}  // namespace myelin::storage::pg
