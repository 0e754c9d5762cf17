#pragma once

// Every table of the schema and what `myelin admin migrate-sqlite-to-postgres` does with it: copy
// its rows, or skip it for a stated reason (ephemeral state, or rows the target writes itself).
// The copy refuses a database that holds a table missing from this list, so a migration that adds
// a table cannot have its rows silently left behind: it must add one line to table_rules.cpp
// (tests/storage/transfer_test.cpp checks the list against the tables of freshly migrated
// databases of both backends).
//
// Thread-safety: constant data and pure functions.

#include <span>
#include <string_view>

namespace myelin::storage::transfer {

enum class TableHandling {
    kCopy,  // every row is copied, byte for byte, and verified
    kSkip,  // left out; the target keeps its own (empty) table
};

struct TableRule {
    std::string_view name;
    TableHandling handling;
    std::string_view reason;  // why a skipped table is skipped; empty for copied ones
};

// Every table, in copy order: a table comes after the tables its rows refer to.
std::span<const TableRule> table_rules();

// The rule for the table `name`, or nullptr when the table is unknown.
const TableRule* find_table_rule(std::string_view name);

}  // namespace myelin::storage::transfer
