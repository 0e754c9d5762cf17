#pragma once

// The running homeserver: wires configuration → storage → services → routes → HTTP server,
// serves until SIGINT/SIGTERM, then shuts down in order (stop accepting, drain in-flight
// requests, stop the hashing pool, close storage). SIGHUP re-reads the TLS certificate and key
// ([listen] tls_certificate, tls_private_key). Used from the main thread only.

#include <memory>

#include "myelin/core/config.hpp"
#include "myelin/core/error.hpp"

namespace myelin::app {

class App {
public:
    ~App();

    // Builds everything a server needs: creates the data folder and the secret key on first
    // start, opens and migrates the database, warms the token cache. Errors name the cause.
    static Result<std::unique_ptr<App>> create(Config config);

    // Serves until a termination signal, then shuts down cleanly. Returns an error only if the
    // listener could not start.
    Result<void> run();

private:
    struct Impl;
    explicit App(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace myelin::app
