#pragma once

// An order-independent checksum of a table's rows, computed the same way over the rows read from
// SQLite and over the rows read back from PostgreSQL, so that the copy can prove every value
// arrived unchanged. Each value is encoded canonically (a type tag, its length and its bytes;
// integers as 8 little-endian bytes; booleans as the integers 0 and 1), each row hashed with
// FNV-1a (64 bits) and a final mix, and the row hashes summed modulo 2^64: equal tables give
// equal sums in any row order, while a changed byte, a lost row or a duplicated one changes the
// sum (barring a 1 in 2^64 accident; it detects damage, not an adversary).
//
// Thread-safety: a plain value; one thread at a time.

#include <cstdint>
#include <string_view>

namespace myelin::storage::transfer {

class RowChecksum {
public:
    void add_null();
    void add_int(std::int64_t value);
    void add_text(std::string_view value);
    void add_bytes(std::string_view value);
    // Ends the current row: its hash joins the sum.
    void end_row();

    std::uint64_t value() const { return sum_; }
    std::int64_t rows() const { return rows_; }

private:
    void mix(std::uint8_t tag, std::string_view bytes);

    static constexpr std::uint64_t kOffset = 14695981039346656037ULL;
    std::uint64_t row_ = kOffset;
    std::uint64_t sum_ = 0;
    std::int64_t rows_ = 0;
};

}  // namespace myelin::storage::transfer
