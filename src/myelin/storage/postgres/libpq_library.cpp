#include "myelin/storage/postgres/libpq_library.hpp"

#include <dlfcn.h>

#include <atomic>
#include <mutex>
#include <string>

namespace myelin::storage::pg {
namespace {

LibPq g_table;
std::atomic<const LibPq*> g_loaded{nullptr};
std::mutex g_loading;

Error missing(const std::string& what) {
    return errors::unavailable("PostgreSQL support needs libpq (Debian package libpq5): " + what,
                               5);
}

}  // namespace

Result<const LibPq*> load_libpq() {
    if (const LibPq* loaded = g_loaded.load(std::memory_order_acquire)) return loaded;
    std::lock_guard lock(g_loading);
    if (const LibPq* loaded = g_loaded.load(std::memory_order_acquire)) return loaded;
    // Never closed: the functions stay valid for the life of the process.
    void* handle = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* why = dlerror();
        return missing(why != nullptr ? why : "cannot load libpq.so.5");
    }
    LibPq table;
#define MYELIN_LIBPQ_RESOLVE(name)                                             \
    table.name = reinterpret_cast<decltype(table.name)>(dlsym(handle, #name)); \
    if (table.name == nullptr) return missing("libpq.so.5 has no function " #name);
    MYELIN_LIBPQ_FUNCTIONS(MYELIN_LIBPQ_RESOLVE)
#undef MYELIN_LIBPQ_RESOLVE
    g_table = table;
    g_loaded.store(&g_table, std::memory_order_release);
    return &g_table;
}

const LibPq& libpq() { return g_table; }

}  // namespace myelin::storage::pg
