#include "myelin/auth/record_slab.hpp"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

namespace myelin::auth::detail {
namespace {

constexpr std::size_t kMapFrom = 64 * 1024;
constexpr std::size_t kHugePage = 2 * 1024 * 1024;
constexpr std::size_t kHugeFrom = kHugePage;

std::size_t mapped_length(std::size_t bytes) {
    const std::size_t unit = bytes >= kHugeFrom ? kHugePage : 4096;
    return (bytes + unit - 1) / unit * unit;
}

}  // namespace

void* map_zeroed(std::size_t bytes) noexcept {
    if (bytes < kMapFrom) {  // cache-line aligned, for the slabs' alignas(64) records
        const std::size_t rounded = (bytes + 63) / 64 * 64;
        void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
        if (p != nullptr) std::memset(p, 0, rounded == 0 ? 64 : rounded);
        return p;
    }
    const std::size_t len = mapped_length(bytes);
    if (bytes < kHugeFrom) {
        void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? nullptr : p;
    }
    // Over-map by one huge page and trim, so the range is 2 MiB aligned.
    void* raw =
        mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    auto start = reinterpret_cast<std::uintptr_t>(raw);
    auto aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
    if (aligned > start) munmap(raw, aligned - start);
    const std::uintptr_t tail = start + len + kHugePage - (aligned + len);
    if (tail > 0) munmap(reinterpret_cast<void*>(aligned + len), tail);
    void* p = reinterpret_cast<void*>(aligned);
    madvise(p, len, MADV_HUGEPAGE);  // advice only: without THP the pages are small ones
    return p;
}

void unmap_zeroed(void* p, std::size_t bytes) noexcept {
    if (p == nullptr) return;
    if (bytes < kMapFrom) {
        std::free(p);
        return;
    }
    munmap(p, mapped_length(bytes));
}

}  // namespace myelin::auth::detail
