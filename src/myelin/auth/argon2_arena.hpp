#pragma once

// A reusable memory region for libsodium's argon2id, so that a hashing thread does not map,
// page-fault and unmap a fresh 19 MiB region for every hash or verification.
//
// libsodium (crypto_pwhash_*) allocates argon2's working memory with one anonymous
// mmap(MAP_POPULATE) and releases it with munmap, and offers no allocator hook. In a
// multi-threaded server that costs about a third of every verification in the kernel: zeroing
// and mapping ~4,900 pages, the page-table lock the hashing threads share, and the TLB shootdown
// every munmap sends to the other cores (bench/README.md, login section). The process therefore
// defines mmap() and munmap() itself (argon2_arena.cpp): they forward to the kernel unchanged,
// except on a thread inside Argon2Arena::Lend, where the one anonymous mapping libsodium asks for
// is served from the thread's arena (pre-faulted, transparent huge pages requested) and its
// munmap wipes the arena (sodium_memzero) instead of unmapping it. The hash is libsodium's
// own, byte for byte; only where its memory comes from changes. When the arena cannot serve a
// request (a hash with a larger memory cost than the arena, an arena that could not be created),
// libsodium's own mmap/munmap path runs as before.
//
// Threading: an arena belongs to one thread at a time (a hashing worker binds its own). lends()
// and the constructor/destructor may be called from any thread that owns the arena.

#include <cstddef>
#include <cstdint>
#include <memory>

namespace myelin::auth {

class Argon2Arena {
public:
    // Maps `bytes` (rounded up to 2 MiB, huge pages requested, excluded from core dumps) and
    // faults every page in. Returns nullptr if the memory cannot be mapped; callers then hash
    // without an arena. Never throws (a hashing worker calls it outside any try).
    [[nodiscard]] static std::unique_ptr<Argon2Arena> create(std::size_t bytes) noexcept;

    Argon2Arena(const Argon2Arena&) = delete;
    Argon2Arena& operator=(const Argon2Arena&) = delete;
    // Wipes and unmaps the region. Must not be lent (no Lend alive on it).
    ~Argon2Arena();

    // While alive, the next anonymous private mmap() of at most capacity() bytes on the calling
    // thread (libsodium's argon2 region) returns the arena, and the matching munmap() wipes it.
    // `arena` may be null (then nothing changes). Lends nest by replacing: keep one per call
    // into libsodium. Not movable; destroy it on the thread that created it.
    class Lend {
    public:
        explicit Lend(Argon2Arena* arena) noexcept;
        Lend(const Lend&) = delete;
        Lend& operator=(const Lend&) = delete;
        ~Lend();

    private:
        Argon2Arena* previous_;
    };

    // Makes `arena` the calling thread's arena (thread_arena()) while alive, restoring the
    // previous one after. `arena` may be null. Destroy it on the thread that created it.
    class Bind {
    public:
        explicit Bind(Argon2Arena* arena) noexcept;
        Bind(const Bind&) = delete;
        Bind& operator=(const Bind&) = delete;
        ~Bind();

    private:
        Argon2Arena* previous_;
    };

    // The arena bound to the calling thread, or null: what PasswordHasher lends to libsodium.
    [[nodiscard]] static Argon2Arena* thread_arena() noexcept;

    // Arenas mapped in the process right now (for tests: workers free theirs).
    [[nodiscard]] static std::size_t live() noexcept;

    [[nodiscard]] std::size_t capacity() const { return size_; }
    // Times the arena served libsodium's mapping (for tests and diagnostics).
    [[nodiscard]] std::uint64_t lends() const { return lends_; }
    // True if every byte of the region is zero (for tests: the arena is wiped after each use).
    [[nodiscard]] bool all_zero() const;

    // Used by the process's mmap()/munmap() (argon2_arena.cpp); not for other callers.
    void* take(std::size_t length) noexcept;
    bool give_back(void* address, std::size_t length) noexcept;

private:
    Argon2Arena(unsigned char* base, std::size_t size) : base_(base), size_(size) {}

    unsigned char* base_;
    std::size_t size_;
    bool lent_ = false;  // libsodium holds the region (between take and give_back)
    std::size_t lent_length_ = 0;
    std::uint64_t lends_ = 0;
};

}  // namespace myelin::auth
