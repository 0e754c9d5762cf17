#include "myelin/core/secret_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <sodium.h>

namespace myelin {

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

Error file_error(const std::filesystem::path& path, std::string_view what,
                 const std::string& problem) {
    return errors::internal(std::string(what) + " " + path.string() + ": " + problem);
}

Error errno_error(const std::filesystem::path& path, std::string_view what,
                  const std::string& action, int err) {
    return file_error(path, what, action + " failed: " + std::strerror(err));
}

std::string octal_mode(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// Reads up to `n` bytes, retrying on EINTR and short reads. Returns the count read (less than n
// only at end of file), or -1 with errno set.
ssize_t read_full(int fd, char* buf, std::size_t n) {
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

bool write_full(int fd, const char* buf, std::size_t n) {
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

Result<std::string> load_existing(const std::filesystem::path& path, std::string_view what,
                                  std::size_t max_size, const Fd& fd) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return errno_error(path, what, "stat", errno);
    if (!S_ISREG(st.st_mode)) return file_error(path, what, "is not a regular file");
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        return file_error(path, what,
                          "is accessible by group or others (mode " + octal_mode(st.st_mode) +
                              "); run `chmod 600 " + path.string() +
                              "` to restrict it to its owner");
    }
    if (st.st_size < 0 || static_cast<std::size_t>(st.st_size) > max_size) {
        return file_error(path, what,
                          "must be at most " + std::to_string(max_size) + " bytes but is " +
                              std::to_string(st.st_size) + " bytes");
    }
    // Read one byte more than allowed to notice a file that grew since fstat.
    std::string buf(max_size + 1, '\0');
    const ssize_t got = read_full(fd.get(), buf.data(), buf.size());
    if (got < 0) {
        const int err = errno;
        wipe_string(buf);
        return errno_error(path, what, "read", err);
    }
    if (static_cast<std::size_t>(got) > max_size) {
        wipe_string(buf);
        return file_error(path, what, "grew beyond " + std::to_string(max_size) + " bytes");
    }
    // Shrinking in place keeps the bytes in the same buffer, so the caller's wipe covers them.
    sodium_memzero(buf.data() + got, buf.size() - static_cast<std::size_t>(got));
    buf.resize(static_cast<std::size_t>(got));
    return buf;
}

// Creates the file with O_EXCL and fills it. Sets `exists` when the path already exists (another
// process won the race, or a dangling symlink sits there), so the caller can try to load it.
Result<std::string> create_new(const std::filesystem::path& path, std::string_view what,
                               const std::function<std::string()>& make_contents, bool& exists) {
    exists = false;
    const int raw = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (raw < 0) {
        const int err = errno;
        if (err == EEXIST) {
            exists = true;
            return errno_error(path, what, "create", err);
        }
        if (err == ENOENT) {
            return file_error(
                path, what,
                "cannot be created: directory " + path.parent_path().string() + " does not exist");
        }
        return errno_error(path, what, "create", err);
    }
    Fd fd(raw);
    std::string contents = make_contents();
    // The umask can only narrow 0600, but make the mode explicit anyway.
    const bool ok = ::fchmod(fd.get(), 0600) == 0 &&
                    write_full(fd.get(), contents.data(), contents.size()) &&
                    ::fsync(fd.get()) == 0;
    if (!ok) {
        const int err = errno;
        wipe_string(contents);
        // Leave no truncated key file behind: the next start would refuse it.
        ::unlink(path.c_str());
        return errno_error(path, what, "write", err);
    }
    // Make the directory entry durable too, so a crash cannot lose a key already in use.
    const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
    const int dir_raw = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_raw >= 0) {
        Fd dir_fd(dir_raw);
        ::fsync(dir_fd.get());
    }
    return contents;
}

}  // namespace

void wipe_string(std::string& s) noexcept {
    if (!s.empty()) sodium_memzero(s.data(), s.size());
    s.clear();
}

Result<std::string> load_or_create_secret_file(const std::filesystem::path& path,
                                               std::string_view what, std::size_t max_size,
                                               const std::function<std::string()>& make_contents) {
    // Two attempts: if another process creates the file between our open and our O_EXCL
    // create, load what it wrote.
    for (int attempt = 0; attempt < 2; ++attempt) {
        const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (raw >= 0) {
            Fd fd(raw);
            return load_existing(path, what, max_size, fd);
        }
        if (errno != ENOENT) return errno_error(path, what, "open", errno);
        bool exists = false;
        auto created = create_new(path, what, make_contents, exists);
        if (!exists) return created;
    }
    return file_error(path, what, "can neither be opened nor created (is it a dangling symlink?)");
}

}  // namespace myelin
