#pragma once

// JSON rendering of issued tokens, shared by login, register and refresh.

#include <boost/json/object.hpp>

#include "myelin/service/session_service.hpp"

namespace myelin::api::client {

// Adds access_token, device_id (when `with_device`), refresh_token and expires_in_ms (when
// present) to `out`.
void put_tokens(boost::json::object& out, const service::IssuedTokens& tokens, bool with_device);

}  // namespace myelin::api::client
