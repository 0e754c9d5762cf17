#include "myelin/api/client/tokens_json.hpp"

namespace myelin::api::client {

void put_tokens(boost::json::object& out, const service::IssuedTokens& tokens, bool with_device) {
    out["access_token"] = tokens.access_token;
    if (with_device) out["device_id"] = tokens.device_id;
    if (tokens.refresh_token) out["refresh_token"] = *tokens.refresh_token;
    if (tokens.expires_in_ms) out["expires_in_ms"] = *tokens.expires_in_ms;
}

}  // namespace myelin::api::client
