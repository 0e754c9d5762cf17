/* A test-only LD_PRELOAD library that makes the file writes of a running myelin fail the way a
 * full disk, a read-only file system or a revoked permission does, and stop failing again,
 * without touching the real disk. Built only with the tests (tests/CMakeLists.txt); used by
 * tests/integration/test_sqlite_faults.py.
 *
 * Environment of the process it is preloaded into:
 *   MYELIN_FAULT_CONTROL  a file whose content (surrounding whitespace ignored) names the fault:
 *                         "enospc", "erofs", "eacces" or "eio"; empty or missing: no fault. It
 *                         is read anew on every intercepted call, so a test switches the fault
 *                         by rewriting it.
 *   MYELIN_FAULT_DIR      an absolute folder, without a trailing slash: only files below it are
 *                         affected (the server's data folder, not its log files).
 *
 * While a fault is on, for files below MYELIN_FAULT_DIR:
 *   - write, pwrite, pwrite64, ftruncate, ftruncate64, fsync, fdatasync, fallocate and
 *     posix_fallocate fail with the fault's errno (ENOSPC, EROFS, EACCES, EIO);
 *   - open, open64, openat and openat64 with O_WRONLY, O_RDWR, O_CREAT or O_TRUNC fail with
 *     EROFS or EACCES for those two faults (opening for reading always works).
 * These are the calls of SQLite's unix VFS (os_unix.c resolves them from libc through its
 * syscall table, so the preloaded definitions take their place). Everything else passes through
 * to the next definition (libc, or the sanitizer runtime's interceptor under ASan).
 *
 * Under AddressSanitizer the shim comes before libasan in the lookup order (it must: a symbol is
 * taken from the first library that defines it), so ASan's link order check has to be switched
 * off with ASAN_OPTIONS=verify_asan_link_order=0; the shim is built without sanitizers. */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void*, size_t);
typedef ssize_t (*pwrite_fn)(int, const void*, size_t, off_t);
typedef ssize_t (*pwrite64_fn)(int, const void*, size_t, off64_t);
typedef int (*fd_fn)(int);
typedef int (*ftruncate_fn)(int, off_t);
typedef int (*ftruncate64_fn)(int, off64_t);
typedef int (*fallocate_fn)(int, int, off_t, off_t);
typedef int (*posix_fallocate_fn)(int, off_t, off_t);
typedef int (*open_fn)(const char*, int, ...);
typedef int (*openat_fn)(int, const char*, int, ...);

/* The next definition of `name` after this library (libc's, or a sanitizer's interceptor),
 * looked up once per call site; every thread finds the same pointer, so the race is benign and
 * the atomic accesses only keep it well-defined. */
static void* next_symbol(void** cache, const char* name) {
    void* f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (f != NULL) return f;
    f = dlsym(RTLD_NEXT, name);
    if (f == NULL) {
        static const char message[] = "fault_shim: a libc symbol is missing\n";
        (void)!syscall(SYS_write, 2, message, sizeof message - 1); /* not through the shim */
        abort();
    }
    __atomic_store_n(cache, f, __ATOMIC_RELEASE);
    return f;
}

#define NEXT(type, name)                   \
    ({                                     \
        static void* cache_ = NULL;        \
        (type) next_symbol(&cache_, name); \
    })

/* The errno of the fault that is on, or 0. */
static int current_fault(void) {
    const char* control = getenv("MYELIN_FAULT_CONTROL");
    if (control == NULL || control[0] == '\0') return 0;
    const open_fn real_open = NEXT(open_fn, "open");
    const int fd = real_open(control, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[32];
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char* start = buf;
    while (*start == ' ' || *start == '\n' || *start == '\t' || *start == '\r') ++start;
    char* end = start + strlen(start);
    while (end > start &&
           (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\t' || end[-1] == '\r')) {
        --end;
    }
    *end = '\0';
    if (strcmp(start, "enospc") == 0) return ENOSPC;
    if (strcmp(start, "erofs") == 0) return EROFS;
    if (strcmp(start, "eacces") == 0) return EACCES;
    if (strcmp(start, "eio") == 0) return EIO;
    return 0;
}

/* True if `path` is MYELIN_FAULT_DIR or below it. */
static int path_is_affected(const char* path) {
    const char* dir = getenv("MYELIN_FAULT_DIR");
    if (dir == NULL || dir[0] != '/' || path == NULL) return 0;
    const size_t len = strlen(dir);
    return strncmp(path, dir, len) == 0 && (path[len] == '/' || path[len] == '\0');
}

static int fd_is_affected(int fd) {
    char link[64];
    char target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    const ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = '\0';
    return path_is_affected(target);
}

/* The errno the call on `fd` must fail with, or 0 to let it through. */
static int fault_for_fd(int fd) {
    const int fault = current_fault();
    if (fault == 0 || !fd_is_affected(fd)) return 0;
    return fault;
}

static int opens_for_writing(int flags) {
    return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0;
}

/* The errno an open of `path` with `flags` must fail with, or 0. */
static int fault_for_open(const char* path, int flags) {
    if (!opens_for_writing(flags)) return 0;
    const int fault = current_fault();
    if (fault != EROFS && fault != EACCES) return 0;
    return path_is_affected(path) ? fault : 0;
}

#define FAIL_IF_FAULTY(fd, failed)           \
    do {                                     \
        const int fault_ = fault_for_fd(fd); \
        if (fault_ != 0) {                   \
            errno = fault_;                  \
            return failed;                   \
        }                                    \
    } while (0)

ssize_t write(int fd, const void* buf, size_t count) {
    const write_fn next = NEXT(write_fn, "write");
    if (fd > 2) FAIL_IF_FAULTY(fd, -1);
    return next(fd, buf, count);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
    const pwrite_fn next = NEXT(pwrite_fn, "pwrite");
    FAIL_IF_FAULTY(fd, -1);
    return next(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
    const pwrite64_fn next = NEXT(pwrite64_fn, "pwrite64");
    FAIL_IF_FAULTY(fd, -1);
    return next(fd, buf, count, offset);
}

int fsync(int fd) {
    const fd_fn next = NEXT(fd_fn, "fsync");
    FAIL_IF_FAULTY(fd, -1);
    return next(fd);
}

int fdatasync(int fd) {
    const fd_fn next = NEXT(fd_fn, "fdatasync");
    FAIL_IF_FAULTY(fd, -1);
    return next(fd);
}

int ftruncate(int fd, off_t length) {
    const ftruncate_fn next = NEXT(ftruncate_fn, "ftruncate");
    FAIL_IF_FAULTY(fd, -1);
    return next(fd, length);
}

int ftruncate64(int fd, off64_t length) {
    const ftruncate64_fn next = NEXT(ftruncate64_fn, "ftruncate64");
    FAIL_IF_FAULTY(fd, -1);
    return next(fd, length);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
    const fallocate_fn next = NEXT(fallocate_fn, "fallocate");
    FAIL_IF_FAULTY(fd, -1);
    return next(fd, mode, offset, len);
}

/* posix_fallocate returns the error number instead of setting errno. */
int posix_fallocate(int fd, off_t offset, off_t len) {
    const posix_fallocate_fn next = NEXT(posix_fallocate_fn, "posix_fallocate");
    const int fault = fault_for_fd(fd);
    if (fault != 0) return fault;
    return next(fd, offset, len);
}

static mode_t mode_argument(int flags, va_list args) {
    if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE) return va_arg(args, mode_t);
    return 0;
}

int open(const char* path, int flags, ...) {
    const open_fn next = NEXT(open_fn, "open");
    va_list args;
    va_start(args, flags);
    const mode_t mode = mode_argument(flags, args);
    va_end(args);
    const int fault = fault_for_open(path, flags);
    if (fault != 0) {
        errno = fault;
        return -1;
    }
    return next(path, flags, mode);
}

int open64(const char* path, int flags, ...) {
    const open_fn next = NEXT(open_fn, "open64");
    va_list args;
    va_start(args, flags);
    const mode_t mode = mode_argument(flags, args);
    va_end(args);
    const int fault = fault_for_open(path, flags);
    if (fault != 0) {
        errno = fault;
        return -1;
    }
    return next(path, flags, mode);
}

int openat(int dirfd, const char* path, int flags, ...) {
    const openat_fn next = NEXT(openat_fn, "openat");
    va_list args;
    va_start(args, flags);
    const mode_t mode = mode_argument(flags, args);
    va_end(args);
    const int fault = fault_for_open(path, flags); /* relative paths: never affected */
    if (fault != 0) {
        errno = fault;
        return -1;
    }
    return next(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char* path, int flags, ...) {
    const openat_fn next = NEXT(openat_fn, "openat64");
    va_list args;
    va_start(args, flags);
    const mode_t mode = mode_argument(flags, args);
    va_end(args);
    const int fault = fault_for_open(path, flags);
    if (fault != 0) {
        errno = fault;
        return -1;
    }
    return next(dirfd, path, flags, mode);
}
