#include "myelin/auth/server_secret.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <sodium.h>

#include "myelin/auth/sodium_init.hpp"

namespace myelin::auth {

ServerSecret::ServerSecret(std::span<const std::uint8_t, kSize> key) noexcept {
    std::memcpy(key_.data(), key.data(), kSize);
}

ServerSecret ServerSecret::generate() {
    ensure_sodium();
    std::array<std::uint8_t, kSize> bytes{};
    randombytes_buf(bytes.data(), bytes.size());
    ServerSecret secret(bytes);
    sodium_memzero(bytes.data(), bytes.size());
    return secret;
}

ServerSecret::ServerSecret(ServerSecret&& other) noexcept : key_(other.key_) {
    sodium_memzero(other.key_.data(), other.key_.size());
}

ServerSecret& ServerSecret::operator=(ServerSecret&& other) noexcept {
    if (this != &other) {
        key_ = other.key_;
        sodium_memzero(other.key_.data(), other.key_.size());
    }
    return *this;
}

ServerSecret::~ServerSecret() { sodium_memzero(key_.data(), key_.size()); }

std::array<std::uint8_t, 32> ServerSecret::derive(std::uint64_t subkey_id,
                                                  const char (&context)[9]) const noexcept {
    static_assert(crypto_kdf_CONTEXTBYTES == 8);
    static_assert(crypto_kdf_KEYBYTES == kSize);
    std::array<std::uint8_t, 32> out{};
    // Cannot fail: the output length is within [crypto_kdf_BYTES_MIN, crypto_kdf_BYTES_MAX].
    crypto_kdf_derive_from_key(out.data(), out.size(), subkey_id, context, key_.data());
    return out;
}

namespace {

// Closes a file descriptor on scope exit.
class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_;
};

Error file_error(const std::filesystem::path& path, const std::string& problem) {
    return errors::internal("Server secret file " + path.string() + ": " + problem);
}

Error errno_error(const std::filesystem::path& path, const std::string& action, int err) {
    return file_error(path, action + " failed: " + std::strerror(err));
}

std::string octal_mode(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// Reads exactly up to `n` bytes, retrying on EINTR and short reads. Returns the count read
// (less than n only at end of file), or -1 with errno set.
ssize_t read_full(int fd, std::uint8_t* buf, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
        const ssize_t r = ::read(fd, buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    return static_cast<ssize_t>(got);
}

bool write_full(int fd, const std::uint8_t* buf, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
        const ssize_t w = ::write(fd, buf + done, n - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        done += static_cast<std::size_t>(w);
    }
    return true;
}

Result<ServerSecret> load_existing(const std::filesystem::path& path, const Fd& fd) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return errno_error(path, "stat", errno);
    if (!S_ISREG(st.st_mode)) return file_error(path, "is not a regular file");
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        return file_error(path, "is accessible by group or others (mode " + octal_mode(st.st_mode) +
                                    "); run `chmod 600 " + path.string() +
                                    "` to restrict it to its owner");
    }
    if (st.st_size != static_cast<off_t>(ServerSecret::kSize)) {
        return file_error(path, "must be exactly " + std::to_string(ServerSecret::kSize) +
                                    " bytes but is " + std::to_string(st.st_size) + " bytes");
    }
    // Read one byte more than expected to notice a file that grew since fstat.
    std::array<std::uint8_t, ServerSecret::kSize + 1> buf{};
    const ssize_t got = read_full(fd.get(), buf.data(), buf.size());
    if (got < 0) {
        const int err = errno;
        sodium_memzero(buf.data(), buf.size());
        return errno_error(path, "read", err);
    }
    if (got != static_cast<ssize_t>(ServerSecret::kSize)) {
        sodium_memzero(buf.data(), buf.size());
        return file_error(path, "must be exactly " + std::to_string(ServerSecret::kSize) +
                                    " bytes but " + std::to_string(got) + " bytes were read");
    }
    ServerSecret secret(
        std::span<const std::uint8_t, ServerSecret::kSize>(buf.data(), ServerSecret::kSize));
    sodium_memzero(buf.data(), buf.size());
    return secret;
}

// Creates the file with O_EXCL and fills it. Sets `exists` when the path already exists (another
// process won the race, or a dangling symlink sits there), so the caller can try to load it.
Result<ServerSecret> create_new(const std::filesystem::path& path, bool& exists) {
    exists = false;
    const int raw = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (raw < 0) {
        const int err = errno;
        if (err == EEXIST) {
            exists = true;
            return errno_error(path, "create", err);
        }
        if (err == ENOENT) {
            return file_error(path, "cannot be created: directory " + path.parent_path().string() +
                                        " does not exist");
        }
        return errno_error(path, "create", err);
    }
    Fd fd(raw);
    std::array<std::uint8_t, ServerSecret::kSize> bytes{};
    randombytes_buf(bytes.data(), bytes.size());
    // The umask can only narrow 0600, but make the mode explicit anyway.
    bool ok = ::fchmod(fd.get(), 0600) == 0 && write_full(fd.get(), bytes.data(), bytes.size()) &&
              ::fsync(fd.get()) == 0;
    if (!ok) {
        const int err = errno;
        sodium_memzero(bytes.data(), bytes.size());
        // Leave no truncated key file behind: the next start would refuse it.
        ::unlink(path.c_str());
        return errno_error(path, "write", err);
    }
    // Make the directory entry durable too, so a crash cannot lose a key already in use.
    const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
    const int dir_raw = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_raw >= 0) {
        Fd dir_fd(dir_raw);
        ::fsync(dir_fd.get());
    }
    ServerSecret secret(bytes);
    sodium_memzero(bytes.data(), bytes.size());
    return secret;
}

}  // namespace

Result<ServerSecret> load_or_create_server_secret(const std::filesystem::path& path) {
    ensure_sodium();
    // Two attempts: if another process creates the file between our open and our O_EXCL
    // create, load what it wrote.
    for (int attempt = 0; attempt < 2; ++attempt) {
        const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (raw >= 0) {
            Fd fd(raw);
            return load_existing(path, fd);
        }
        if (errno != ENOENT) return errno_error(path, "open", errno);
        bool exists = false;
        auto created = create_new(path, exists);
        if (!exists) return created;
    }
    return file_error(path, "can neither be opened nor created (is it a dangling symlink?)");
}

}  // namespace myelin::auth
