// The /sync token: every stream position survives a round trip, and anything that is not
// exactly the server's format is refused (a malformed `since` must be a 400, never a guess).

#include "myelin/service/sync_token.hpp"

#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace myelin::service {
namespace {

TEST(SyncToken, RoundTripsEveryStreamPosition) {
    const SyncToken token{72595, 4483, 1934, 7, 12, 1764000000123};
    EXPECT_EQ(format_sync_token(token), "s72595_4483_1934_7_12_1764000000123");
    EXPECT_EQ(parse_sync_token("s72595_4483_1934_7_12_1764000000123"), token);
    const SyncToken zero{};
    EXPECT_EQ(format_sync_token(zero), "s0_0_0_0_0_0");
    EXPECT_EQ(parse_sync_token(format_sync_token(zero)), zero);
    constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
    const SyncToken huge{kMax, kMax, kMax, kMax, kMax, kMax};
    EXPECT_EQ(parse_sync_token(format_sync_token(huge)), huge);
    // Each position lands in its own field.
    const auto parsed = parse_sync_token("s1_2_3_4_5_6");
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->events, 1);
    EXPECT_EQ(parsed->account_data, 2);
    EXPECT_EQ(parsed->to_device, 3);
    EXPECT_EQ(parsed->device_lists, 4);
    EXPECT_EQ(parsed->receipts, 5);
    EXPECT_EQ(parsed->typing, 6);
}

TEST(SyncToken, RefusesAnythingElse) {
    for (const char* bad : {"",
                            "s",
                            "s1",
                            "s1_2_3",
                            "s1_2_3_4",
                            "s1_2_3_4_5",
                            "s1_2_3_4_5_6_7",
                            "t1_2_3_4_5_6",
                            "1_2_3_4_5_6",
                            "s1_2_3_4_5_",
                            "s_1_2_3_4_5",
                            "s1__2_3_4_5_6",
                            "s-1_2_3_4_5_6",
                            "s+1_2_3_4_5_6",
                            "s1_2_3_4_5_6 ",
                            " s1_2_3_4_5_6",
                            "s1_2_x_4_5_6",
                            "s1_2_3_4_5_6x",
                            "s1_2_3_4_5_-6",
                            "s99999999999999999999_1_1_1_1_1",
                            "s1.0_2_3_4_5_6",
                            "S1_2_3_4_5_6"}) {
        EXPECT_FALSE(parse_sync_token(bad).has_value()) << bad;
    }
    EXPECT_FALSE(parse_sync_token(std::string(130, '1')).has_value());
    EXPECT_FALSE(parse_sync_token("s" + std::string(125, '1')).has_value());
}

}  // namespace
}  // namespace myelin::service
