#pragma once

// A numbered schema migration, as every SQL backend keeps them (compiled into the binary, applied
// in order when a database is opened, recorded one row per version in `schema_version`), and the
// refusal of a database written by a newer build.
//
// Thread-safety: plain values and pure functions.

#include <cstddef>
#include <span>

#include "myelin/core/error.hpp"

namespace myelin::storage {

// One step of a backend's schema. Versions start at 1 and increase by one.
struct Migration {
    int version;
    const char* name;  // what it does, for logs
    const char* sql;   // one or more statements, run inside the migration's transaction
};

// True when the versions are 1, 2, 3, ... in order (for a static_assert on each backend's list).
constexpr bool versions_are_consecutive(std::span<const Migration> migrations) {
    for (std::size_t i = 0; i < migrations.size(); ++i) {
        if (migrations[i].version != static_cast<int>(i) + 1) return false;
    }
    return true;
}

// The error (500 M_UNKNOWN) for a database at schema `version` when this build writes
// `supported`: "database schema version 7 is newer than this myelin build supports (3); upgrade
// myelin".
Error schema_too_new(int version, int supported);

}  // namespace myelin::storage
