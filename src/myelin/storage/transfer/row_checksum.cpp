#include "myelin/storage/transfer/row_checksum.hpp"

#include <array>

namespace myelin::storage::transfer {

namespace {

constexpr std::uint64_t kPrime = 1099511628211ULL;

enum Tag : std::uint8_t { kNull = 0, kInt = 1, kText = 2, kBytes = 3 };

// splitmix64's finaliser: spreads every input bit over the whole word before the rows are summed.
std::uint64_t finalise(std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

}  // namespace

void RowChecksum::mix(std::uint8_t tag, std::string_view bytes) {
    std::array<std::uint8_t, 9> head{};
    head[0] = tag;
    const auto size = static_cast<std::uint64_t>(bytes.size());
    for (int i = 0; i < 8; ++i) head[1 + i] = static_cast<std::uint8_t>(size >> (8 * i));
    for (std::uint8_t b : head) row_ = (row_ ^ b) * kPrime;
    for (char c : bytes) row_ = (row_ ^ static_cast<std::uint8_t>(c)) * kPrime;
}

void RowChecksum::add_null() { mix(kNull, {}); }

void RowChecksum::add_int(std::int64_t value) {
    std::array<char, 8> bytes{};
    const auto v = static_cast<std::uint64_t>(value);
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(v >> (8 * i));
    mix(kInt, std::string_view(bytes.data(), bytes.size()));
}

void RowChecksum::add_text(std::string_view value) { mix(kText, value); }

void RowChecksum::add_bytes(std::string_view value) { mix(kBytes, value); }

void RowChecksum::end_row() {
    sum_ += finalise(row_);
    row_ = kOffset;
    ++rows_;
}

}  // namespace myelin::storage::transfer
