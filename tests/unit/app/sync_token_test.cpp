// The /sync token: every stream position survives a round trip, and anything that is not
// exactly the server's format is refused (a malformed `since` must be a 400, never a guess).

#include "myelin/service/sync_token.hpp"

#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace myelin::service {
namespace {

TEST(SyncToken, RoundTripsEveryStreamPosition) {
    const SyncToken token{72595, 4483, 1934, 7};
    EXPECT_EQ(format_sync_token(token), "s72595_4483_1934_7");
    EXPECT_EQ(parse_sync_token("s72595_4483_1934_7"), token);
    const SyncToken zero{};
    EXPECT_EQ(parse_sync_token(format_sync_token(zero)), zero);
    constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
    const SyncToken huge{kMax, kMax, kMax, kMax};
    EXPECT_EQ(parse_sync_token(format_sync_token(huge)), huge);
}

TEST(SyncToken, RefusesAnythingElse) {
    for (const char* bad :
         {"", "s", "s1", "s1_2_3", "s1_2_3_4_5", "t1_2_3_4", "1_2_3_4", "s1_2_3_", "s_1_2_3",
          "s1__2_3_4", "s-1_2_3_4", "s+1_2_3_4", "s1_2_3_4 ", " s1_2_3_4", "s1_2_x_4", "s1_2_3_4x",
          "s99999999999999999999_1_1_1", "s1.0_2_3_4", "S1_2_3_4"}) {
        EXPECT_FALSE(parse_sync_token(bad).has_value()) << bad;
    }
    EXPECT_FALSE(parse_sync_token(std::string(100, '1')).has_value());
}

}  // namespace
}  // namespace myelin::service
