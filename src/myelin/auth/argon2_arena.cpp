#include "myelin/auth/argon2_arena.hpp"

#include <dlfcn.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <new>

#include <sodium.h>

namespace myelin::auth {
namespace {

// The arena lent to libsodium on this thread (set by Argon2Arena::Lend), or null.
thread_local Argon2Arena* t_lent = nullptr;
// The arena bound to this thread (Argon2Arena::Bind), or null.
thread_local Argon2Arena* t_bound = nullptr;

constexpr std::size_t kHugePage = std::size_t{2} << 20;

using mmap_fn = void* (*)(void*, std::size_t, int, int, int, off_t);
using munmap_fn = int (*)(void*, std::size_t);

// The next definitions after the executable's own (libc's, or a sanitizer runtime's). dlsym
// allocates through malloc at most, which never calls back into mmap() below (glibc's malloc
// maps memory through its internal entry point), so resolving lazily cannot recurse.
template <typename Fn>
Fn next_symbol(std::atomic<Fn>& cache, const char* name) noexcept {
    Fn fn = cache.load(std::memory_order_acquire);
    if (fn == nullptr) {
        fn = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
        cache.store(fn, std::memory_order_release);
    }
    return fn;
}

std::atomic<std::size_t> g_live{0};

std::atomic<mmap_fn> g_next_mmap{nullptr};
std::atomic<munmap_fn> g_next_munmap{nullptr};

void* system_mmap(void* address, std::size_t length, int prot, int flags, int fd,
                  off_t offset) noexcept {
    return next_symbol(g_next_mmap, "mmap")(address, length, prot, flags, fd, offset);
}

int system_munmap(void* address, std::size_t length) noexcept {
    return next_symbol(g_next_munmap, "munmap")(address, length);
}

// libsodium's argon2 region: anonymous, private, read-write, anywhere.
bool is_plain_anonymous_mapping(void* address, int prot, int flags, int fd, off_t offset) noexcept {
    return address == nullptr && fd == -1 && offset == 0 && prot == (PROT_READ | PROT_WRITE) &&
           (flags & MAP_ANONYMOUS) != 0 && (flags & MAP_PRIVATE) != 0 && (flags & MAP_FIXED) == 0;
}

}  // namespace

std::unique_ptr<Argon2Arena> Argon2Arena::create(std::size_t bytes) noexcept {
    if (bytes == 0 || bytes > (SIZE_MAX / 2)) return nullptr;
    const std::size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    // Map one huge page more than needed and trim, so that the region is 2 MiB aligned and the
    // kernel can back it with huge pages (fewer faults now, fewer TLB misses while hashing).
    void* raw = system_mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const auto raw_address = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = (raw_address + kHugePage - 1) & ~(kHugePage - 1);
    const std::size_t head = aligned - raw_address;
    if (head != 0) system_munmap(raw, head);
    const std::size_t tail = kHugePage - head;
    if (tail != 0) system_munmap(reinterpret_cast<void*>(aligned + size), tail);
    auto* base = reinterpret_cast<unsigned char*>(aligned);
    // Both are hints: without transparent huge pages (or with them off) the arena still works
    // on 4 KiB pages, and a core dump simply includes it.
    static_cast<void>(madvise(base, size, MADV_HUGEPAGE));
    static_cast<void>(madvise(base, size, MADV_DONTDUMP));
    sodium_memzero(base, size);  // faults every page in now, not during the first hash
    std::unique_ptr<Argon2Arena> arena(new (std::nothrow) Argon2Arena(base, size));
    if (arena == nullptr) {
        system_munmap(base, size);
        return nullptr;
    }
    g_live.fetch_add(1, std::memory_order_relaxed);
    return arena;
}

Argon2Arena::~Argon2Arena() {
    sodium_memzero(base_, size_);
    system_munmap(base_, size_);
    g_live.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t Argon2Arena::live() noexcept { return g_live.load(std::memory_order_relaxed); }

bool Argon2Arena::all_zero() const { return sodium_is_zero(base_, size_) == 1; }

void* Argon2Arena::take(std::size_t length) noexcept {
    if (lent_ || length == 0 || length > size_) return nullptr;
    lent_ = true;
    lent_length_ = length;
    ++lends_;
    return base_;
}

bool Argon2Arena::give_back(void* address, std::size_t length) noexcept {
    if (!lent_ || address != base_ || length != lent_length_) return false;
    // The region held argon2's blocks, derived from the password: never leave them behind.
    sodium_memzero(base_, lent_length_);
    lent_ = false;
    lent_length_ = 0;
    return true;
}

Argon2Arena::Lend::Lend(Argon2Arena* arena) noexcept : previous_(t_lent) { t_lent = arena; }

Argon2Arena::Lend::~Lend() { t_lent = previous_; }

Argon2Arena::Bind::Bind(Argon2Arena* arena) noexcept : previous_(t_bound) { t_bound = arena; }

Argon2Arena::Bind::~Bind() { t_bound = previous_; }

Argon2Arena* Argon2Arena::thread_arena() noexcept { return t_bound; }

}  // namespace myelin::auth

// The process's mmap() and munmap(). Shared libraries (libsodium among them) bind to these
// before libc's, because the executable comes first in symbol lookup; glibc's own allocations go
// through its internal entry points and never reach here. Outside an Argon2Arena::Lend on the
// calling thread, both forward to the next definition unchanged.
extern "C" __attribute__((visibility("default"))) void* mmap(void* address, std::size_t length,
                                                             int prot, int flags, int fd,
                                                             off_t offset) noexcept {
    myelin::auth::Argon2Arena* arena = myelin::auth::t_lent;
    if (arena != nullptr &&
        myelin::auth::is_plain_anonymous_mapping(address, prot, flags, fd, offset)) {
        if (void* region = arena->take(length)) return region;
    }
    return myelin::auth::system_mmap(address, length, prot, flags, fd, offset);
}

extern "C" __attribute__((visibility("default"))) int munmap(void* address,
                                                             std::size_t length) noexcept {
    myelin::auth::Argon2Arena* arena = myelin::auth::t_lent;
    if (arena != nullptr && arena->give_back(address, length)) return 0;
    return myelin::auth::system_munmap(address, length);
}
