#include "myelin/service/push_rule_service.hpp"

#include <utility>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

// The stored changes of the user, or none.
Result<PushRules> load(storage::ReadTxn& txn, const std::string& user_id) {
    auto stored = txn.find_account_data(user_id, "", kPushRulesAccountDataType);
    if (!stored) return stored.error();
    if (!*stored) return PushRules();
    boost::system::error_code ec;
    auto value = boost::json::parse((*stored)->content, ec);
    if (ec || !value.is_object()) return PushRules();  // unreadable: the defaults
    return PushRules(std::move(value.get_object()));
}

}  // namespace

boost::asio::awaitable<Result<PushRules>> PushRuleService::get(std::string user_id) {
    auto job = [user_id = std::move(user_id)](storage::ReadTxn& txn) { return load(txn, user_id); };
    return storage::read<PushRules>(db_, std::move(job));
}

boost::asio::awaitable<Result<void>> PushRuleService::modify(
    std::string user_id, std::function<Result<void>(PushRules&)> change) {
    std::function<void()> wake;
    if (notifier_ != nullptr) wake = [notifier = notifier_, user_id] { notifier->notify(user_id); };
    auto job = [user_id = std::move(user_id),
                change = std::move(change)](storage::WriteTxn& txn) -> Result<void> {
        auto rules = load(txn, user_id);
        if (!rules) return rules.error();
        if (auto r = change(*rules); !r) return r.error();
        auto pos = txn.put_account_data(user_id, "", kPushRulesAccountDataType,
                                        boost::json::serialize(rules->stored()));
        if (!pos) return pos.error();
        return {};
    };
    return storage::write<void>(db_, std::move(job), std::move(wake));
}

}  // namespace myelin::service
