#include "myelin/auth/fingerprint_index.hpp"

#include <new>

namespace myelin::auth::detail {

void FingerprintIndex::grow() {
    const std::size_t new_capacity = capacity_ == 0 ? 16 : capacity_ * 2;
    auto* fresh = static_cast<std::uint64_t*>(map_zeroed(new_capacity * sizeof(std::uint64_t)));
    if (fresh == nullptr) throw std::bad_alloc();
    std::uint64_t* old = slots_;
    const std::size_t old_capacity = capacity_;
    slots_ = fresh;
    capacity_ = new_capacity;
    mask_ = new_capacity - 1;
    for (std::size_t i = 0; i < old_capacity; ++i) {
        if (old[i] != 0) place(fingerprint(old[i]), record(old[i]));
    }
    unmap_zeroed(old, old_capacity * sizeof(std::uint64_t));
}

}  // namespace myelin::auth::detail
