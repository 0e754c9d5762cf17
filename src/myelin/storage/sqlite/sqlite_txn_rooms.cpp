// The room and event writes of SqliteWriteTxn (database.hpp, "Rooms and events"): the shared
// implementations of storage/room_queries.hpp over SqliteRoomExec.

#include "myelin/storage/sqlite/sqlite_txn.hpp"

namespace myelin::storage::sqlite {

Result<bool> SqliteWriteTxn::insert_room(const RoomRecord& room) {
    return room_queries::insert_room(this->exec_, room);
}

Result<std::int64_t> SqliteWriteTxn::append_event(const NewEvent& event) {
    return room_queries::append_event(this->exec_, event);
}

Result<bool> SqliteWriteTxn::redact_event(std::string_view event_id, std::string_view redacted_json,
                                          std::string_view redacted_by) {
    return room_queries::redact_event(this->exec_, event_id, redacted_json, redacted_by);
}

Result<bool> SqliteWriteTxn::insert_transaction(const TransactionRecord& txn) {
    return room_queries::insert_transaction(this->exec_, txn);
}

Result<bool> SqliteWriteTxn::forget_room(std::string_view room_id, std::string_view user_id) {
    return room_queries::forget_room(this->exec_, room_id, user_id);
}

Result<bool> SqliteWriteTxn::insert_room_alias(const RoomAliasRecord& alias) {
    return room_queries::insert_room_alias(this->exec_, alias);
}

Result<bool> SqliteWriteTxn::delete_room_alias(std::string_view alias) {
    return room_queries::delete_room_alias(this->exec_, alias);
}

Result<bool> SqliteWriteTxn::set_room_public(std::string_view room_id, bool is_public) {
    return room_queries::set_room_public(this->exec_, room_id, is_public);
}

Result<std::optional<std::int64_t>> SqliteWriteTxn::put_receipt(const ReceiptRecord& receipt) {
    return room_queries::put_receipt(this->exec_, receipt);
}

}  // namespace myelin::storage::sqlite
