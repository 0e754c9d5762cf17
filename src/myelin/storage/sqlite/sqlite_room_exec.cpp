#include "myelin/storage/sqlite/sqlite_room_exec.hpp"

namespace myelin::storage::sqlite {

Result<ScopedStatement> SqliteRoomExec::prepare(std::string_view sql, room_queries::Params params) {
    auto stmt = conn_.prepare(sql);
    if (!stmt) return stmt.error();
    int index = 1;
    for (const auto& p : params) {
        switch (p.kind) {
            case room_queries::Param::Kind::kInt:
            case room_queries::Param::Kind::kBool:
                (*stmt)->bind_int(index, p.i);
                break;
            case room_queries::Param::Kind::kText:
                (*stmt)->bind_text(index, p.s);
                break;
            case room_queries::Param::Kind::kNull:
                (*stmt)->bind_null(index);
                break;
        }
        ++index;
    }
    return stmt;
}

Result<std::int64_t> SqliteRoomExec::run(std::string_view sql, room_queries::Params params) {
    auto stmt = prepare(sql, params);
    if (!stmt) return stmt.error();
    if (auto r = (*stmt)->run(); !r) return r.error();
    return conn_.changes();
}

}  // namespace myelin::storage::sqlite
