#pragma once

// The SQLite `Exec` of storage/room_queries.hpp: runs one cached prepared statement of
// room_sql.hpp with its parameters. Thread-safety: as the connection's.

#include <optional>
#include <string_view>
#include <vector>

#include "myelin/storage/room_queries.hpp"
#include "myelin/storage/sqlite/connection.hpp"

namespace myelin::storage::sqlite {

class SqliteRoomExec {
public:
    explicit SqliteRoomExec(Connection& conn) : conn_(conn) {}

    template <typename T, typename Read>
    Result<std::optional<T>> one(std::string_view sql, room_queries::Params params, Read read) {
        auto stmt = prepare(sql, params);
        if (!stmt) return stmt.error();
        auto row = (*stmt)->step();
        if (!row) return row.error();
        if (!*row) return std::optional<T>();
        return std::optional<T>(read(**stmt));
    }

    template <typename T, typename Read>
    Result<std::vector<T>> all(std::string_view sql, room_queries::Params params, Read read) {
        auto stmt = prepare(sql, params);
        if (!stmt) return stmt.error();
        std::vector<T> out;
        for (;;) {
            auto row = (*stmt)->step();
            if (!row) return row.error();
            if (!*row) return out;
            out.push_back(read(**stmt));
        }
    }

    // Runs a statement without result rows; the rows it changed.
    Result<std::int64_t> run(std::string_view sql, room_queries::Params params);

private:
    // The cached statement for `sql` with `params` bound (from 1).
    Result<ScopedStatement> prepare(std::string_view sql, room_queries::Params params);

    Connection& conn_;
};

}  // namespace myelin::storage::sqlite
