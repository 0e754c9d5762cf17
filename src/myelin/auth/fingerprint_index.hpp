#pragma once

// An open-addressing hash index from a key to a record number, for the token cache: 8 bytes
// an entry (a 32-bit fingerprint of the key's hash, which also picks the home slot, and the
// record number), linear probing, deletion by backward shift (no tombstones), doubling when
// 80 % full. Keys are not stored: the caller compares the key kept in the record. Large tables
// ask for transparent huge pages (see map_zeroed).
//
// Thread-safety: none; the caller locks.

#include <cstddef>
#include <cstdint>

#include "myelin/auth/record_slab.hpp"

namespace myelin::auth::detail {

class FingerprintIndex {
public:
    FingerprintIndex() = default;
    FingerprintIndex(const FingerprintIndex&) = delete;
    FingerprintIndex& operator=(const FingerprintIndex&) = delete;
    ~FingerprintIndex() { unmap_zeroed(slots_, capacity_ * sizeof(std::uint64_t)); }

    // The record filed under `fp` for which matches(record) is true, or kNoRecord.
    template <class Matches>
    std::uint32_t find(std::uint32_t fp, Matches&& matches) const {
        if (capacity_ == 0) return kNoRecord;
        for (std::size_t i = fp & mask_;; i = (i + 1) & mask_) {
            const std::uint64_t e = slots_[i];
            if (e == 0) return kNoRecord;
            if (fingerprint(e) == fp && matches(record(e))) return record(e);
        }
    }

    // Files `rec` under `fp` (the caller knows that no matching entry exists). Throws
    // std::bad_alloc when growing fails.
    void insert(std::uint32_t fp, std::uint32_t rec) {
        if ((size_ + 1) * 5 > capacity_ * 4) grow();
        place(fp, rec);
        ++size_;
    }

    // Points the matching entry at `rec` instead; false when there is none.
    template <class Matches>
    bool reassign(std::uint32_t fp, Matches&& matches, std::uint32_t rec) {
        std::size_t i = 0;
        if (!locate(fp, matches, i)) return false;
        slots_[i] = entry(fp, rec);
        return true;
    }

    // Removes the matching entry; false when there is none.
    template <class Matches>
    bool erase(std::uint32_t fp, Matches&& matches) {
        std::size_t hole = 0;
        if (!locate(fp, matches, hole)) return false;
        // Backward shift: move later entries of the probe run into the hole when the hole
        // lies between their home slot and where they are.
        for (std::size_t j = (hole + 1) & mask_;; j = (j + 1) & mask_) {
            const std::uint64_t e = slots_[j];
            if (e == 0) break;
            const std::size_t home = fingerprint(e) & mask_;
            if (((j - home) & mask_) >= ((j - hole) & mask_)) {
                slots_[hole] = e;
                hole = j;
            }
        }
        slots_[hole] = 0;
        --size_;
        return true;
    }

    // Calls f(record) for every entry (the index must not change meanwhile).
    template <class F>
    void for_each(F&& f) const {
        for (std::size_t i = 0; i < capacity_; ++i) {
            if (slots_[i] != 0) f(record(slots_[i]));
        }
    }

    // Empties the index and gives its memory back.
    void clear() noexcept {
        unmap_zeroed(slots_, capacity_ * sizeof(std::uint64_t));
        slots_ = nullptr;
        capacity_ = 0;
        mask_ = 0;
        size_ = 0;
    }

    std::size_t size() const { return size_; }
    std::size_t capacity() const { return capacity_; }

private:
    static std::uint64_t entry(std::uint32_t fp, std::uint32_t rec) {
        return (std::uint64_t{fp} << 32) | (std::uint64_t{rec} + 1);
    }
    static std::uint32_t fingerprint(std::uint64_t e) {
        return static_cast<std::uint32_t>(e >> 32);
    }
    static std::uint32_t record(std::uint64_t e) { return static_cast<std::uint32_t>(e) - 1; }

    template <class Matches>
    bool locate(std::uint32_t fp, Matches& matches, std::size_t& at) const {
        if (capacity_ == 0) return false;
        for (std::size_t i = fp & mask_;; i = (i + 1) & mask_) {
            const std::uint64_t e = slots_[i];
            if (e == 0) return false;
            if (fingerprint(e) == fp && matches(record(e))) {
                at = i;
                return true;
            }
        }
    }

    void place(std::uint32_t fp, std::uint32_t rec) {
        std::size_t i = fp & mask_;
        while (slots_[i] != 0) i = (i + 1) & mask_;
        slots_[i] = entry(fp, rec);
    }

    void grow();

    std::uint64_t* slots_ = nullptr;
    std::size_t capacity_ = 0;  // 0 or a power of two
    std::size_t mask_ = 0;
    std::size_t size_ = 0;
};

}  // namespace myelin::auth::detail
