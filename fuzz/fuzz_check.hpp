#pragma once

// Invariant checks for the fuzz targets: a violated property aborts, which libFuzzer reports as a
// crash and saves the input (like a sanitizer finding). Header-only; used by fuzz/fuzz_*.cpp.

#include <cstdio>
#include <cstdlib>

namespace myelin::fuzz {

// Aborts the process with `what` on stderr unless `ok`. Never returns when !ok.
inline void require(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
}

}  // namespace myelin::fuzz
