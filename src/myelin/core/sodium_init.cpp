#include "myelin/core/sodium_init.hpp"

#include <mutex>
#include <stdexcept>

#include <sodium.h>

namespace myelin {

void ensure_sodium() {
    static std::once_flag once;
    std::call_once(once, [] {
        // 0: initialised now; 1: already initialised (e.g. by another library); -1: failure.
        if (sodium_init() < 0) {
            throw std::runtime_error("libsodium initialisation failed");
        }
    });
}

}  // namespace myelin
