// The SQLite side of cross-signing (migration 10): users' cross-signing keys and the signatures
// uploaded through /keys/signatures/upload. Members of SqliteQueries / SqliteWriteTxn declared in
// sqlite_txn.hpp.

#include <string_view>
#include <vector>

#include "myelin/storage/sqlite/sqlite_rows.hpp"
#include "myelin/storage/sqlite/sqlite_txn.hpp"

namespace myelin::storage::sqlite {

namespace {

constexpr std::string_view kListCrossSigningKeys =
    "SELECT user_id, key_type, public_key, key_json FROM cross_signing_keys WHERE user_id = ?1 "
    "ORDER BY key_type";
constexpr std::string_view kUpsertCrossSigningKey =
    "INSERT INTO cross_signing_keys (user_id, key_type, public_key, key_json) "
    "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user_id, key_type) "
    "DO UPDATE SET public_key = excluded.public_key, key_json = excluded.key_json";
constexpr std::string_view kListKeySignatures =
    "SELECT target_user, target_key, signer_user, signer_key_id, signature FROM key_signatures "
    "WHERE target_user = ?1 ORDER BY target_key, signer_user, signer_key_id";
constexpr std::string_view kUpsertKeySignature =
    "INSERT INTO key_signatures (target_user, target_key, signer_user, signer_key_id, signature) "
    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (target_user, target_key, signer_user, "
    "signer_key_id) DO UPDATE SET signature = excluded.signature";
constexpr std::string_view kDeleteKeySignatures =
    "DELETE FROM key_signatures WHERE target_user = ?1 AND target_key = ?2";

}  // namespace

template <typename Base>
Result<std::vector<CrossSigningKeyRecord>> SqliteQueries<Base>::list_cross_signing_keys(
    std::string_view user_id) {
    auto stmt = conn_.prepare(kListCrossSigningKeys);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    return all_rows<CrossSigningKeyRecord>(**stmt, [](const Statement& s) {
        return CrossSigningKeyRecord{s.column_text(0), s.column_text(1), s.column_text(2),
                                     s.column_text(3)};
    });
}

template <typename Base>
Result<std::vector<KeySignatureRecord>> SqliteQueries<Base>::list_key_signatures(
    std::string_view target_user) {
    auto stmt = conn_.prepare(kListKeySignatures);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, target_user);
    return all_rows<KeySignatureRecord>(**stmt, [](const Statement& s) {
        return KeySignatureRecord{s.column_text(0), s.column_text(1), s.column_text(2),
                                  s.column_text(3), s.column_text(4)};
    });
}

#define MYELIN_SQLITE_CROSS_SIGNING_QUERIES(Base)                                              \
    template Result<std::vector<CrossSigningKeyRecord>>                                        \
        SqliteQueries<Base>::list_cross_signing_keys(std::string_view);                        \
    template Result<std::vector<KeySignatureRecord>> SqliteQueries<Base>::list_key_signatures( \
        std::string_view);
MYELIN_SQLITE_CROSS_SIGNING_QUERIES(ReadTxn)
MYELIN_SQLITE_CROSS_SIGNING_QUERIES(WriteTxn)
#undef MYELIN_SQLITE_CROSS_SIGNING_QUERIES

Result<void> SqliteWriteTxn::upsert_cross_signing_key(const CrossSigningKeyRecord& key) {
    return run_texts(conn_, kUpsertCrossSigningKey, key.user_id, key.key_type, key.public_key,
                     key.key_json);
}

Result<void> SqliteWriteTxn::upsert_key_signature(const KeySignatureRecord& signature) {
    return run_texts(conn_, kUpsertKeySignature, signature.target_user, signature.target_key,
                     signature.signer_user, signature.signer_key_id, signature.signature);
}

Result<void> SqliteWriteTxn::delete_key_signatures(std::string_view target_user,
                                                   std::string_view target_key) {
    return run_texts(conn_, kDeleteKeySignatures, target_user, target_key);
}

}  // namespace myelin::storage::sqlite
