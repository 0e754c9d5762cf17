#pragma once

// Small secret files (the server secret, the event signing key): loaded at start-up, or created
// once with fresh contents. One implementation of the conventions every key file follows:
// created with O_CREAT|O_EXCL and mode 0600, written and fsync'ed together with its directory,
// refused on load when it is not a regular file or when group or others can access it.
//
// Thread-safety: free functions without shared state. They block on file I/O: start-up and CLI
// only, never on a network thread.

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "myelin/core/error.hpp"

namespace myelin {

// Loads the file at `path`, or creates it with the bytes `make_contents()` returns when no file
// exists there. `what` names the file in errors ("Server secret file", "Signing key file").
// Success: the file's bytes (the caller validates their form and wipes them with sodium_memzero
// when done). Loading refuses (500 M_UNKNOWN, the message names the file and the problem, never
// the contents): not a regular file, group/other access (telling the operator to `chmod 600`
// it), more than `max_size` bytes, I/O failures. Creation needs the parent directory to exist
// (the message says so otherwise); a failed write leaves no partial file behind. If another
// process creates the file concurrently, its contents are loaded instead.
[[nodiscard]] Result<std::string> load_or_create_secret_file(
    const std::filesystem::path& path, std::string_view what, std::size_t max_size,
    const std::function<std::string()>& make_contents);

// Overwrites `s`'s bytes with zeros (sodium_memzero) and clears it.
void wipe_string(std::string& s) noexcept;

}  // namespace myelin
