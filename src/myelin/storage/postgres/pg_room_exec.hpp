#pragma once

// The PostgreSQL `Exec` of storage/room_queries.hpp: runs one statement of room_sql.hpp (its
// "?N" placeholders turned into "$N" once per statement) as a prepared statement with its
// parameters. Thread-safety: as the connection's.

#include <optional>
#include <string_view>
#include <vector>

#include "myelin/storage/postgres/pg_connection.hpp"
#include "myelin/storage/room_queries.hpp"

namespace myelin::storage::pg {

class PgRoomExec {
public:
    explicit PgRoomExec(Connection& conn) : conn_(conn) {}

    template <typename T, typename Read>
    Result<std::optional<T>> one(std::string_view sql, room_queries::Params params, Read read) {
        auto rows = query(sql, params);
        if (!rows) return rows.error();
        if (rows->empty()) return std::optional<T>();
        return std::optional<T>(read(rows->row(0)));
    }

    template <typename T, typename Read>
    Result<std::vector<T>> all(std::string_view sql, room_queries::Params params, Read read) {
        auto rows = query(sql, params);
        if (!rows) return rows.error();
        std::vector<T> out;
        out.reserve(static_cast<std::size_t>(rows->size()));
        for (int i = 0; i < rows->size(); ++i) out.push_back(read(rows->row(i)));
        return out;
    }

    // Runs a statement without result rows; the rows it changed.
    Result<std::int64_t> run(std::string_view sql, room_queries::Params params);

private:
    Result<Rows> query(std::string_view sql, room_queries::Params params);

    Connection& conn_;
};

}  // namespace myelin::storage::pg
