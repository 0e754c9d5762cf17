#include "myelin/storage/postgres/pg_room_exec.hpp"

#include <map>
#include <mutex>
#include <string>

namespace myelin::storage::pg {

namespace {

// The PostgreSQL text of a room statement, converted on first use and kept for the process's
// lifetime (the statements are constants, so the map stays small).
const std::string& postgres_text(std::string_view sql) {
    static std::mutex mutex;
    static std::map<std::string, std::string, std::less<>> converted;
    std::lock_guard lock(mutex);
    auto found = converted.find(sql);
    if (found == converted.end()) {
        found = converted.emplace(std::string(sql), room_sql::postgres_placeholders(sql)).first;
    }
    return found->second;
}

}  // namespace

Result<Rows> PgRoomExec::query(std::string_view sql, room_queries::Params params) {
    Params p;
    for (const auto& param : params) {
        switch (param.kind) {
            case room_queries::Param::Kind::kInt:
                p.add_int(param.i);
                break;
            case room_queries::Param::Kind::kBool:
                p.add_bool(param.i != 0);
                break;
            case room_queries::Param::Kind::kText:
                p.add_text(param.s);
                break;
            case room_queries::Param::Kind::kNull:
                p.add_null();
                break;
        }
    }
    return conn_.query(postgres_text(sql), p, "a room query");
}

Result<std::int64_t> PgRoomExec::run(std::string_view sql, room_queries::Params params) {
    auto rows = query(sql, params);
    if (!rows) return rows.error();
    return rows->affected();
}

}  // namespace myelin::storage::pg
