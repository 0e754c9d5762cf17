#include "myelin/core/log.hpp"

#include <gtest/gtest.h>

namespace myelin::log {
namespace {

TEST(RedactTarget, HidesEverySecretParameter) {
    EXPECT_EQ(redact_target("/_matrix/client/v3/account/whoami?access_token=SECRET&x=1"),
              "/_matrix/client/v3/account/whoami?access_token=<redacted>&x=1");
    EXPECT_EQ(redact_target("/a?x=1&token=abc&refresh_token=def&password=ghi"),
              "/a?x=1&token=<redacted>&refresh_token=<redacted>&password=<redacted>");
    EXPECT_EQ(redact_target("/plain/path"), "/plain/path");
}

TEST(RedactTarget, HidesPercentEncodedParameterNames) {
    std::string out = redact_target("/a?access%5Ftoken=SECRET");
    EXPECT_EQ(out.find("SECRET"), std::string::npos) << out;
}

}  // namespace
}  // namespace myelin::log
