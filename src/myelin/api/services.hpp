#pragma once

// What the endpoint handlers may use: the configuration and the services. Owned by the App;
// references stay valid while the server runs.

#include "myelin/core/config.hpp"
#include "myelin/service/account_service.hpp"
#include "myelin/service/session_service.hpp"

namespace myelin::api {

struct Services {
    const Config& config;
    service::SessionService& sessions;
    service::AccountService& accounts;
};

}  // namespace myelin::api
