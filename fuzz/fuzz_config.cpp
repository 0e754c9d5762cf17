// libFuzzer target: parse_config (core/config.hpp) on arbitrary bytes as TOML text, then
// config_warnings() on what it accepts. Finds crashes, sanitizer findings and exceptions that
// escape (parse_config must turn every bad input into an error value). An accepted config must
// satisfy the checks parse_config promises.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "myelin/core/config.hpp"

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using myelin::fuzz::require;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    auto config = myelin::parse_config(text, "/etc/myelin");
    if (!config) {
        require(!config.error().message.empty(), "config error without a message");
        return 0;
    }
    (void)myelin::config_warnings(*config);
    require(!config->server_name.empty(), "accepted config has an empty server_name");
    require(config->database.is_postgres || !config->database.sqlite_path.empty(),
            "accepted SQLite config has no database path");
    require(!config->key_file.empty(), "accepted config has no key_file");
    require(config->public_baseurl.rfind("http://", 0) == 0 ||
                config->public_baseurl.rfind("https://", 0) == 0,
            "accepted public_baseurl is not http(s)");
    require(config->tokens.access_token_lifetime.count() > 0,
            "accepted access_token_lifetime is not positive");
    return 0;
}
