#include "myelin/app/cli.hpp"

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>

#include "myelin/app/admin_cli.hpp"
#include "myelin/app/app.hpp"
#include "myelin/core/config.hpp"
#include "myelin/core/log.hpp"
#include "myelin/http/tls_context.hpp"

namespace myelin::app {
namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitConfig = 2;

// The config path from --config, else MYELIN_CONFIG; empty when neither is given.
std::string config_path(const std::string& flag) {
    if (!flag.empty()) return flag;
    if (const char* env = std::getenv("MYELIN_CONFIG")) return env;
    return {};
}

int load(const std::string& path, Config& out) {
    if (path.empty()) {
        std::cerr << "myelin: no config file: pass --config FILE or set MYELIN_CONFIG\n";
        return kExitConfig;
    }
    auto config = load_config(path);
    if (!config) {
        std::cerr << "myelin: " << config.error().message << "\n";
        return kExitConfig;
    }
    out = std::move(*config);
    return 0;
}

int serve(const std::string& path) {
    Config config;
    if (int rc = load(path, config); rc != 0) return rc;
    log::init(config.logging.level);
    for (const auto& warning : config_warnings(config)) log::app()->warn("config: {}", warning);
    auto app = App::create(std::move(config));
    if (!app) {
        log::app()->error("cannot start: {}", app.error().message);
        log::shutdown();
        return app.error().message.find("config key") == 0 ? kExitConfig : kExitRuntime;
    }
    auto ran = (*app)->run();
    app->reset();
    if (!ran) {
        log::app()->error("cannot serve: {}", ran.error().message);
        log::shutdown();
        return kExitRuntime;
    }
    log::shutdown();
    return 0;
}

int check(const std::string& path) {
    Config config;
    if (int rc = load(path, config); rc != 0) return rc;
    for (const auto& warning : config_warnings(config)) std::cerr << "warning: " << warning << "\n";
    if (config.listen.tls()) {
        auto tls =
            http::TlsContext::load(config.listen.tls_certificate, config.listen.tls_private_key);
        if (!tls) {
            std::cerr << "myelin: " << path << ": " << tls.error().message << "\n";
            return kExitConfig;
        }
        if ((*tls)->expired()) {
            std::cerr << "warning: the TLS certificate is expired or not yet valid\n";
        }
        std::cout << "TLS certificate: " << (*tls)->summary() << "\n";
    }
    std::cout << "config OK: " << path << "\n";
    return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
    CLI::App cli{"Myelin, a Matrix homeserver"};
    cli.set_version_flag("--version", std::string("myelin ") + MYELIN_VERSION);
    cli.require_subcommand(1);

    std::string serve_config;
    auto* serve_cmd = cli.add_subcommand("serve", "Run the homeserver");
    serve_cmd->add_option("--config,-c", serve_config, "Config file (or set MYELIN_CONFIG)");

    cli.add_subcommand("generate-config", "Print a complete, commented default config");

    std::string check_config;
    auto* check_cmd = cli.add_subcommand("check-config", "Validate a config file and exit");
    check_cmd->add_option("--config,-c", check_config, "Config file (or set MYELIN_CONFIG)");

    AdminCli admin(cli);  // `myelin admin ...` (app/admin_cli.hpp)

    try {
        cli.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = cli.exit(e);
        return rc == 0 ? 0 : kExitConfig;
    }
    if (*serve_cmd) return serve(config_path(serve_config));
    if (*check_cmd) return check(config_path(check_config));
    if (admin.chosen()) return admin.run();
    if (cli.got_subcommand("generate-config")) {
        std::cout << default_config_text();
        return 0;
    }
    return kExitConfig;
}

}  // namespace myelin::app
