#include "myelin/api/client/request_bodies.hpp"

#include <optional>
#include <string>

#include <gtest/gtest.h>

namespace myelin::api::client {
namespace {

TEST(RequestBodies, LoginReadsIdentifierAndOptionalFields) {
    auto r = decode_login(
        R"({"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},)"
        R"("password":"pw","device_id":"D","initial_device_display_name":"Phone",)"
        R"("refresh_token":true})");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->user, "alice");
    EXPECT_EQ(r->password, "pw");
    EXPECT_EQ(r->device_id, "D");
    EXPECT_EQ(r->initial_device_display_name, "Phone");
    EXPECT_TRUE(r->refresh_token);
}

TEST(RequestBodies, LoginErrorsInTheHandlersOrder) {
    EXPECT_EQ(decode_login("nope").error().errcode, "M_NOT_JSON");
    EXPECT_EQ(decode_login(R"({"type":"m.login.token"})").error().errcode, "M_UNKNOWN");
    EXPECT_EQ(decode_login(R"({"type":"m.login.password"})").error().errcode, "M_MISSING_PARAM");
    auto third = decode_login(
        R"({"type":"m.login.password","identifier":{"type":"m.id.phone"},"password":"x"})");
    EXPECT_EQ(third.error().status, 403);
    auto device = decode_login(R"({"type":"m.login.password","user":"a","password":"x",)"
                               R"("device_id":""})");
    EXPECT_EQ(device.error().errcode, "M_INVALID_PARAM");
}

TEST(RequestBodies, RegisterChecksKindBeforeBodyAndIgnoresUserFieldsOfGuests) {
    EXPECT_EQ(decode_register(std::string_view("admin"), "not json").error().errcode,
              "M_INVALID_PARAM");
    auto guest = decode_register(std::string_view("guest"), R"({"username":1,"auth":2})");
    ASSERT_TRUE(guest);
    EXPECT_TRUE(guest->guest);
    EXPECT_FALSE(guest->username);
    auto user = decode_register(std::nullopt, R"({"username":"bob","auth":{"type":"x"}})");
    ASSERT_TRUE(user);
    EXPECT_EQ(user->username, "bob");
    ASSERT_TRUE(user->auth);
    EXPECT_EQ(user->auth->at("type"), "x");
}

TEST(RequestBodies, PasswordChangeLimitsLengthBeforeOtherFields) {
    auto r = decode_password_change(R"({"new_password":"123456789","logout_devices":"x"})", 8);
    EXPECT_EQ(r.error().errcode, "M_INVALID_PARAM");
    auto ok = decode_password_change(R"({"new_password":"1234"})", 8);
    ASSERT_TRUE(ok);
    EXPECT_TRUE(ok->logout_devices);
    EXPECT_FALSE(ok->auth);
}

TEST(RequestBodies, EmptyBodiesCountAsObjectsOnlyWhereTheSpecLeavesThemEmpty) {
    EXPECT_TRUE(decode_deactivate(""));
    EXPECT_TRUE(decode_device_update(""));
    EXPECT_TRUE(decode_device_delete(""));
    EXPECT_FALSE(decode_refresh(""));
    EXPECT_FALSE(decode_delete_devices(""));
}

TEST(RequestBodies, DeviceDisplayNamesAreLimitedTo100CodePoints) {
    // 100 two-byte characters fit; a 101st does not. Counted in code points, not bytes.
    std::string hundred;
    for (int i = 0; i < 100; ++i) hundred += "\u00e9";
    const std::string utf8_hundred = [] {
        std::string s;
        for (int i = 0; i < 100; ++i) s += "\xc3\xa9";
        return s;
    }();
    auto fits = decode_device_update(R"({"display_name":")" + hundred + R"("})");
    ASSERT_TRUE(fits) << fits.error().message;
    EXPECT_EQ(**fits, utf8_hundred);
    auto too_long = decode_device_update(R"({"display_name":")" + hundred + R"(x"})");
    ASSERT_FALSE(too_long);
    EXPECT_EQ(too_long.error().status, 400);
    EXPECT_EQ(too_long.error().errcode, "M_TOO_LARGE");

    // At sign-in a long name is cut on a character boundary instead of failing the login.
    auto login = decode_login(R"({"type":"m.login.password","user":"a","password":"p",)"
                              R"("initial_device_display_name":")" +
                              hundred + R"(\u00e9tail"})");
    ASSERT_TRUE(login) << login.error().message;
    EXPECT_EQ(login->initial_device_display_name, utf8_hundred);
    auto registration =
        decode_register(std::nullopt, R"({"initial_device_display_name":")" + hundred + R"(zz"})");
    ASSERT_TRUE(registration) << registration.error().message;
    EXPECT_EQ(registration->initial_device_display_name, utf8_hundred);
}

TEST(RequestBodies, DeleteDevicesNeedsAnArrayOfStrings) {
    EXPECT_EQ(decode_delete_devices("{}").error().errcode, "M_MISSING_PARAM");
    EXPECT_EQ(decode_delete_devices(R"({"devices":"A"})").error().errcode, "M_BAD_JSON");
    EXPECT_EQ(decode_delete_devices(R"({"devices":["A",1]})").error().errcode, "M_BAD_JSON");
    auto ok = decode_delete_devices(R"({"devices":["A","B"],"auth":null})");
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->devices, (std::vector<std::string>{"A", "B"}));
    EXPECT_FALSE(ok->auth);
}

}  // namespace
}  // namespace myelin::api::client
