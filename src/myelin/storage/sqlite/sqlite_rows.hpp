#pragma once

// Running a prepared statement and reading its rows, shared by the SqliteQueries /
// SqliteWriteTxn files (sqlite_txn*.cpp). Each passes a step's or a prepare's error on unchanged.
//
// Thread-safety: as the statement's connection (one thread at a time).

#include <optional>
#include <string_view>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/storage/sqlite/connection.hpp"

namespace myelin::storage::sqlite {

// Every row of the statement, in order, read with `read_row` (which returns T).
template <typename T, typename ReadRow>
Result<std::vector<T>> all_rows(Statement& s, ReadRow read_row) {
    std::vector<T> out;
    for (;;) {
        auto row = s.step();
        if (!row) return row.error();
        if (!*row) return out;
        out.push_back(read_row(s));
    }
}

// The statement's first row read with `read_row`, or nullopt when there is none. The statement
// is stepped to its end, so that a RETURNING statement's change is complete before the next one.
template <typename T, typename ReadRow>
Result<std::optional<T>> first_row(Statement& s, ReadRow read_row) {
    auto row = s.step();
    if (!row) return row.error();
    if (!*row) return std::optional<T>();
    std::optional<T> value(read_row(s));
    for (;;) {
        auto more = s.step();
        if (!more) return more.error();
        if (!*more) break;
    }
    return value;
}

// Prepares `sql`, binds `texts` to ?1, ?2, ... and runs it.
template <typename... Texts>
Result<void> run_texts(Connection& conn, std::string_view sql, const Texts&... texts) {
    auto stmt = conn.prepare(sql);
    if (!stmt) return stmt.error();
    int index = 1;
    ((*stmt)->bind_text(index++, texts), ...);
    return (*stmt)->run();
}

}  // namespace myelin::storage::sqlite
