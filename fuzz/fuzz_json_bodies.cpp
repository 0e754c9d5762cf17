// libFuzzer target: every auth endpoint's JSON body decoder (api/client/request_bodies.hpp:
// login, register as user and as guest, refresh and tokenrefresh, account password and
// deactivate, PUT and DELETE /devices/{id}, delete_devices) and the rate limiter's reading of
// the login user (service::login_body_user), all on the same bytes. Beyond "no crash, no
// sanitizer finding, no exception": errors are client errors with a Matrix errcode, and what
// is accepted respects the documented limits. (POST /logout and /logout/all read no body.)

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "myelin/api/client/request_bodies.hpp"
#include "myelin/service/rate_limiter.hpp"

#include "fuzz_check.hpp"

namespace {

constexpr std::size_t kMaxPasswordBytes = 1024;  // [passwords] max_length's default

// A decoder's error must be a 400 or 403 with an M_ errcode and a message.
template <typename T>
void check_error(const myelin::Result<T>& result) {
    using myelin::fuzz::require;
    if (result) return;
    const myelin::Error& e = result.error();
    require(e.status == 400 || e.status == 403, "body decoder error is not a 400 or 403");
    require(e.errcode.rfind("M_", 0) == 0, "body decoder errcode does not start with M_");
    require(!e.message.empty(), "body decoder error without a message");
}

void check_device_id(const std::optional<std::string>& device_id) {
    myelin::fuzz::require(!device_id || (!device_id->empty() && device_id->size() <= 255),
                          "accepted device_id is not 1 to 255 bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace myelin::api::client;
    using myelin::fuzz::require;
    const std::string_view body(reinterpret_cast<const char*>(data), size);

    auto login = decode_login(body);
    check_error(login);
    if (login) check_device_id(login->device_id);

    for (auto kind :
         {std::optional<std::string_view>{}, std::optional<std::string_view>("guest")}) {
        auto registration = decode_register(kind, body);
        check_error(registration);
        if (registration) {
            check_device_id(registration->device_id);
            require(registration->guest == kind.has_value(), "register decoded the wrong kind");
            require(!registration->guest ||
                        (!registration->username && !registration->password && !registration->auth),
                    "a guest registration kept user fields");
        }
    }

    check_error(decode_refresh(body));

    auto password = decode_password_change(body, kMaxPasswordBytes);
    check_error(password);
    if (password) {
        require(password->new_password.size() <= kMaxPasswordBytes,
                "accepted new_password is over the limit");
    }

    check_error(decode_deactivate(body));
    check_error(decode_device_update(body));
    check_error(decode_device_delete(body));
    check_error(decode_delete_devices(body));

    // Must never fail: an unreadable body simply names no user.
    (void)myelin::service::login_body_user(body);
    return 0;
}
