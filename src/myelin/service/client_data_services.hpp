#pragma once

// The services behind the calls clients make right after login (issue #8 §1) and presence, built
// together so that the api::Services bundle gains one member. Thread-safety: as each service's.

#include <string>

#include "myelin/core/clock.hpp"
#include "myelin/service/account_data_service.hpp"
#include "myelin/service/cross_signing_service.hpp"
#include "myelin/service/e2e_key_service.hpp"
#include "myelin/service/filter_service.hpp"
#include "myelin/service/presence_service.hpp"
#include "myelin/service/profile_service.hpp"
#include "myelin/service/push_rule_service.hpp"
#include "myelin/service/to_device_service.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

struct ClientDataServices {
    // `db`, `clock` and `server_name` must outlive the services.
    ClientDataServices(storage::Database& db, const Clock& clock, const std::string& server_name)
        : push_rules(db),
          account_data(db),
          filters(db),
          profiles(db),
          keys(db),
          cross_signing(db, server_name),
          to_device(db, clock, server_name),
          presence(db, clock) {}

    PushRuleService push_rules;
    AccountDataService account_data;
    FilterService filters;
    ProfileService profiles;
    E2eKeyService keys;
    CrossSigningService cross_signing;
    ToDeviceService to_device;
    // In memory, per process (presence_service.hpp).
    PresenceService presence;
};

}  // namespace myelin::service
