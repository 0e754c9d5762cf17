#pragma once

// What the endpoint handlers may use: the configuration and the services. Owned by the App;
// references stay valid while the server runs.

#include "myelin/core/clock.hpp"
#include "myelin/core/config.hpp"
#include "myelin/events/signing_key.hpp"
#include "myelin/service/account_service.hpp"
#include "myelin/service/client_data_services.hpp"
#include "myelin/service/device_service.hpp"
#include "myelin/service/receipt_service.hpp"
#include "myelin/service/registration_tokens.hpp"
#include "myelin/service/room_service.hpp"
#include "myelin/service/session_service.hpp"
#include "myelin/service/sync_service.hpp"
#include "myelin/service/typing_service.hpp"
#include "myelin/service/uia.hpp"

namespace myelin::api {

struct Services {
    const Config& config;
    service::SessionService& sessions;
    service::AccountService& accounts;
    service::UiaEngine& uia;  // every UIA-protected endpoint authenticates through it
    service::RegistrationTokens& registration_tokens;
    service::DeviceService& devices;
    // Push rules, account data, filters, profiles, keys, to-device (issue #8 §1).
    service::ClientDataServices& client_data;
    // Rooms and events (issue #8 §2).
    service::RoomService& rooms;
    // GET /sync (issue #8 §3).
    service::SyncService& sync;
    // Typing notifications and receipts / read markers (issue #8 §3, ephemeral events).
    service::TypingService& typing;
    service::ReceiptService& receipts;
    const events::SigningKey& signing_key;  // the server's event signing key
    const Clock& clock;
};

}  // namespace myelin::api
