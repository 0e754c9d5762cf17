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
    // A registration token named in the admin API's path.
    EXPECT_EQ(redact_target("/_myelin/admin/v1/registration_tokens/s3cret"),
              "/_myelin/admin/v1/registration_tokens/<redacted>");
    EXPECT_EQ(redact_target("/_myelin/admin/v1/registration_tokens/s3cret?token=x"),
              "/_myelin/admin/v1/registration_tokens/<redacted>?token=<redacted>");
    EXPECT_EQ(redact_target("/_myelin/admin/v1/registration_tokens"),
              "/_myelin/admin/v1/registration_tokens");
}

TEST(RedactTarget, HidesPercentEncodedParameterNames) {
    std::string out = redact_target("/a?access%5Ftoken=SECRET");
    EXPECT_EQ(out.find("SECRET"), std::string::npos) << out;
}

}  // namespace
}  // namespace myelin::log
