#pragma once

// Reading and changing a user's push rules (push_rules.hpp) in storage: the stored changes are
// the global account-data entry "m.push_rules", so every change also advances the user's
// account-data stream (a /sync sends the new ruleset). Thread-safety: all methods may be called
// concurrently; storage work runs on the database's threads.

#include <functional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/error.hpp"
#include "myelin/service/push_rules.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// The account-data type under which the push-rule changes are kept.
inline constexpr std::string_view kPushRulesAccountDataType = "m.push_rules";

class PushRuleService {
public:
    // `db` must outlive the service.
    explicit PushRuleService(storage::Database& db) : db_(db) {}

    // The user's rules (defaults merged with their changes). Errors: 503.
    boost::asio::awaitable<Result<PushRules>> get(std::string user_id);

    // Applies `change` to the user's rules and stores the result, in one write job (changes of
    // one user are serialised). When `change` fails nothing is written and its error is
    // returned. Errors: those of `change`, 503.
    boost::asio::awaitable<Result<void>> modify(std::string user_id,
                                                std::function<Result<void>(PushRules&)> change);

    // Wakes the user's long-polls (/sync) after each committed modify(): the rules are
    // account data. nullptr (the default): nobody is woken. Set before serving; `notifier`
    // must outlive the service.
    void set_notifier(UserNotifier* notifier) { notifier_ = notifier; }

private:
    storage::Database& db_;
    UserNotifier* notifier_ = nullptr;
};

}  // namespace myelin::service
