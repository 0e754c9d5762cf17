#pragma once

// Fixed-size records with stable addresses, numbered from 0, for the token cache: a record is
// allocated once and reused after it is freed (no allocation per record once its chunk exists).
// Chunks double in size (64, 128, 256... records), are mapped from the kernel untouched (a
// record's pages count in RSS once used) and, from 2 MiB up, ask for transparent huge pages.

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

namespace myelin::auth::detail {

inline constexpr std::uint32_t kNoRecord = 0xFFFFFFFFU;

// `bytes` of zeroed memory, 64-byte aligned: aligned_alloc below 64 KiB, else an anonymous mapping
// (aligned to 2 MiB and advised MADV_HUGEPAGE from 2 MiB up). nullptr when out of memory.
void* map_zeroed(std::size_t bytes) noexcept;
// Frees what map_zeroed(bytes) returned (the same `bytes`).
void unmap_zeroed(void* p, std::size_t bytes) noexcept;

// Thread-safety: allocate() and free() lock the slab's mutex; at() takes no lock and may run
// concurrently with them, for a record whose allocation happened-before (e.g. through another
// lock that both sides take).
template <class T>
class Slab {
public:
    Slab() = default;
    Slab(const Slab&) = delete;
    Slab& operator=(const Slab&) = delete;
    ~Slab() {
        std::uint32_t n = constructed_;
        for (std::uint32_t i = 0; i < n; ++i) at(i).~T();
        for (std::size_t k = 0; k < chunks_.size(); ++k) {
            T* c = chunks_[k].load(std::memory_order_relaxed);
            if (c != nullptr) unmap_zeroed(c, chunk_size(k) * sizeof(T));
        }
    }

    T& at(std::uint32_t i) const {
        const std::uint32_t q = i / kBase + 1;
        const auto k = static_cast<std::size_t>(std::bit_width(q) - 1);
        const std::uint32_t offset = i - kBase * ((1U << k) - 1);
        return chunks_[k].load(std::memory_order_relaxed)[offset];
    }

    // A free record's number (default-constructed the first time, as left by its last user
    // after that). Throws std::bad_alloc when out of memory.
    std::uint32_t allocate() {
        std::lock_guard lock(mu_);
        if (!free_.empty()) {
            std::uint32_t i = free_.back();
            free_.pop_back();
            return i;
        }
        const std::uint32_t i = constructed_;
        if (i == kNoRecord) throw std::bad_alloc();
        const std::uint32_t q = i / kBase + 1;
        const auto k = static_cast<std::size_t>(std::bit_width(q) - 1);
        if (chunks_[k].load(std::memory_order_relaxed) == nullptr) {
            void* p = map_zeroed(chunk_size(k) * sizeof(T));
            if (p == nullptr) throw std::bad_alloc();
            chunks_[k].store(static_cast<T*>(p), std::memory_order_release);
        }
        ::new (static_cast<void*>(&at(i))) T();
        ++constructed_;
        return i;
    }

    // Makes record i available to allocate() again (the caller has reset what it must).
    void free(std::uint32_t i) {
        std::lock_guard lock(mu_);
        free_.push_back(i);
    }

    // Records handed out at least once (live or free).
    std::size_t allocated() const {
        std::lock_guard lock(mu_);
        return constructed_;
    }

private:
    static constexpr std::uint32_t kBase = 64;
    static constexpr std::size_t chunk_size(std::size_t k) { return std::size_t{kBase} << k; }

    mutable std::mutex mu_;
    std::vector<std::uint32_t> free_;           // guarded by mu_
    std::uint32_t constructed_ = 0;             // guarded by mu_
    std::array<std::atomic<T*>, 27> chunks_{};  // written under mu_, once each
};

}  // namespace myelin::auth::detail
