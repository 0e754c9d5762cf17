#include "myelin/http/connection_quota.hpp"

#include <gtest/gtest.h>

namespace myelin::http {
namespace {

TEST(ConnectionQuota, EachKeyHoldsAtMostItsShare) {
    ConnectionQuota quota(2);
    EXPECT_TRUE(quota.try_acquire("1.2.3.4"));
    EXPECT_TRUE(quota.try_acquire("1.2.3.4"));
    EXPECT_FALSE(quota.try_acquire("1.2.3.4"));
    EXPECT_EQ(quota.held("1.2.3.4"), 2u);
    EXPECT_TRUE(quota.try_acquire("5.6.7.8"));  // another address is not affected
    quota.release("1.2.3.4");
    EXPECT_TRUE(quota.try_acquire("1.2.3.4"));
    quota.release("1.2.3.4");
    quota.release("1.2.3.4");
    EXPECT_EQ(quota.held("1.2.3.4"), 0u);
}

TEST(ConnectionQuota, EmptyKeysAndZeroAreUnlimited) {
    ConnectionQuota quota(1);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(quota.try_acquire(""));
    quota.release("");
    ConnectionQuota off(0);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(off.try_acquire("1.2.3.4"));
    EXPECT_EQ(off.held("1.2.3.4"), 0u);
}

}  // namespace
}  // namespace myelin::http
