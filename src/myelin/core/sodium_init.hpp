#pragma once

// One-time libsodium initialisation. Every module that calls libsodium (auth/, events/) calls
// ensure_sodium() before its first libsodium call; the application also calls it once at
// start-up.
//
// Thread-safety: safe to call from any thread, any number of times.

namespace myelin {

// Initialises libsodium exactly once (std::call_once around sodium_init()). Cheap after the
// first call. Throws std::runtime_error if libsodium cannot initialise (no usable randomness
// source): that is an environment failure the server cannot run without.
void ensure_sodium();

}  // namespace myelin
