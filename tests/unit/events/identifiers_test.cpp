#include "myelin/events/identifiers.hpp"

#include <string>

#include <gtest/gtest.h>

namespace myelin::events {
namespace {

TEST(Identifiers, ServerNameOf) {
    EXPECT_EQ(server_name_of("@u:example.org"), "example.org");
    EXPECT_EQ(server_name_of("!r:example.org:8448"), "example.org:8448");
    EXPECT_EQ(server_name_of("@u:[::1]:8448"), "[::1]:8448");
    EXPECT_EQ(server_name_of("$abc"), "");
}

TEST(Identifiers, ServerNames) {
    for (const char* ok : {"example.org", "a", "1.2.3.4", "1.2.3.4:80", "[::1]", "[::1]:8448",
                           "my-host.example:65535"}) {
        EXPECT_TRUE(is_valid_server_name(ok)) << ok;
    }
    for (const char* bad : {"", ":80", "example.org:", "example.org:123456", "example.org:8a",
                            "exa mple.org", "[::1", "[]", "ex_ample.org", "[::g]"}) {
        EXPECT_FALSE(is_valid_server_name(bad)) << bad;
    }
}

TEST(Identifiers, UserIds) {
    for (const char* ok :
         {"@alice:example.org", "@a:b", "@Historical.ID!:example.org:8448", "@x:[::1]"}) {
        EXPECT_TRUE(is_valid_user_id(ok)) << ok;
    }
    for (const char* bad : {"alice:example.org", "@:example.org", "@alice",
                            "@alice:", "@al ice:example.org", "@alice:bad host"}) {
        EXPECT_FALSE(is_valid_user_id(bad)) << bad;
    }
    EXPECT_FALSE(is_valid_user_id("@" + std::string(250, 'a') + ":b.org"));  // > 255 bytes
}

}  // namespace
}  // namespace myelin::events
