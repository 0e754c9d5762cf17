#pragma once

// Readers of a finished statement's result, shared by the PgQueries / PgWriteTxn files
// (pg_txn*.cpp): each takes the statement's Result<Rows> as Connection::query returned it and
// passes its error on unchanged.
//
// Thread-safety: as the connection's (one thread at a time).

#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/storage/postgres/pg_connection.hpp"

namespace myelin::storage::pg {

// At most one row, read with `read_row` (which returns T or Result<T>). Success: the first row's
// value, or nullopt when there is none. Failure: the statement's error, or read_row's.
template <typename T, typename ReadRow>
Result<std::optional<T>> first_row(const Result<Rows>& rows, ReadRow read_row) {
    if (!rows) return rows.error();
    if (rows->empty()) return std::optional<T>();
    Result<T> value = read_row(rows->row(0));
    if (!value) return value.error();
    return std::optional<T>(std::move(*value));
}

// Every row, in the result's order, read with `read_row` (which returns T). Failure: the
// statement's error.
template <typename T, typename ReadRow>
Result<std::vector<T>> all_rows(const Result<Rows>& rows, ReadRow read_row) {
    if (!rows) return rows.error();
    std::vector<T> out;
    out.reserve(static_cast<std::size_t>(rows->size()));
    for (int i = 0; i < rows->size(); ++i) out.push_back(read_row(rows->row(i)));
    return out;
}

// Whether the statement changed exactly one row. Failure: the statement's error.
inline Result<bool> changed_one(const Result<Rows>& rows) {
    if (!rows) return rows.error();
    return rows->affected() == 1;
}

// Success when the statement ran (its rows are not read). Failure: the statement's error.
inline Result<void> done(const Result<Rows>& rows) {
    if (!rows) return rows.error();
    return {};
}

}  // namespace myelin::storage::pg
