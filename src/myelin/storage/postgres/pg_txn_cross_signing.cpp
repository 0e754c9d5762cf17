// The PostgreSQL side of cross-signing (migration 10): users' cross-signing keys and the
// signatures uploaded through /keys/signatures/upload. Members of PgQueries / PgWriteTxn declared
// in pg_txn.hpp.

#include <string_view>
#include <vector>

#include "myelin/storage/postgres/pg_rows.hpp"
#include "myelin/storage/postgres/pg_txn.hpp"

namespace myelin::storage::pg {

namespace {

constexpr std::string_view kListCrossSigningKeys =
    "SELECT user_id, key_type, public_key, key_json FROM cross_signing_keys WHERE user_id = $1 "
    "ORDER BY key_type";
constexpr std::string_view kUpsertCrossSigningKey =
    "INSERT INTO cross_signing_keys (user_id, key_type, public_key, key_json) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key_type) "
    "DO UPDATE SET public_key = excluded.public_key, key_json = excluded.key_json";
constexpr std::string_view kListKeySignatures =
    "SELECT target_user, target_key, signer_user, signer_key_id, signature FROM key_signatures "
    "WHERE target_user = $1 ORDER BY target_key, signer_user, signer_key_id";
constexpr std::string_view kUpsertKeySignature =
    "INSERT INTO key_signatures (target_user, target_key, signer_user, signer_key_id, signature) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_user, target_key, signer_user, "
    "signer_key_id) DO UPDATE SET signature = excluded.signature";
constexpr std::string_view kDeleteKeySignatures =
    "DELETE FROM key_signatures WHERE target_user = $1 AND target_key = $2";

}  // namespace

template <typename Base>
Result<std::vector<CrossSigningKeyRecord>> PgQueries<Base>::list_cross_signing_keys(
    std::string_view user_id) {
    return all_rows<CrossSigningKeyRecord>(
        conn_.query(kListCrossSigningKeys, Params{}.add_text(user_id)), [](const Row& r) {
            return CrossSigningKeyRecord{r.column_text(0), r.column_text(1), r.column_text(2),
                                         r.column_text(3)};
        });
}

template <typename Base>
Result<std::vector<KeySignatureRecord>> PgQueries<Base>::list_key_signatures(
    std::string_view target_user) {
    return all_rows<KeySignatureRecord>(
        conn_.query(kListKeySignatures, Params{}.add_text(target_user)), [](const Row& r) {
            return KeySignatureRecord{r.column_text(0), r.column_text(1), r.column_text(2),
                                      r.column_text(3), r.column_text(4)};
        });
}

#define MYELIN_PG_CROSS_SIGNING_QUERIES(Base)                                                     \
    template Result<std::vector<CrossSigningKeyRecord>> PgQueries<Base>::list_cross_signing_keys( \
        std::string_view);                                                                        \
    template Result<std::vector<KeySignatureRecord>> PgQueries<Base>::list_key_signatures(        \
        std::string_view);
MYELIN_PG_CROSS_SIGNING_QUERIES(ReadTxn)
MYELIN_PG_CROSS_SIGNING_QUERIES(WriteTxn)
#undef MYELIN_PG_CROSS_SIGNING_QUERIES

Result<void> PgWriteTxn::upsert_cross_signing_key(const CrossSigningKeyRecord& key) {
    return done(conn_.query(kUpsertCrossSigningKey, Params{}
                                                        .add_text(key.user_id)
                                                        .add_text(key.key_type)
                                                        .add_text(key.public_key)
                                                        .add_text(key.key_json)));
}

Result<void> PgWriteTxn::upsert_key_signature(const KeySignatureRecord& signature) {
    return done(conn_.query(kUpsertKeySignature, Params{}
                                                     .add_text(signature.target_user)
                                                     .add_text(signature.target_key)
                                                     .add_text(signature.signer_user)
                                                     .add_text(signature.signer_key_id)
                                                     .add_text(signature.signature)));
}

Result<void> PgWriteTxn::delete_key_signatures(std::string_view target_user,
                                               std::string_view target_key) {
    return done(
        conn_.query(kDeleteKeySignatures, Params{}.add_text(target_user).add_text(target_key)));
}

}  // namespace myelin::storage::pg
