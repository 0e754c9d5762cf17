// The in-memory typing set (service/typing_set.hpp): a room's serial changes exactly when its
// set of typing users changes, serials only increase (and follow the clock when it is ahead),
// users whose time is up are left out of a snapshot and dropped by expire(), which says when the
// next one is due. Times are given explicitly: no sleeping, no real clock.

#include "myelin/service/typing_set.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace myelin::service {
namespace {

using Users = std::vector<std::string>;

Users typing_in(const TypingSet& set, const std::string& room, std::int64_t now) {
    auto snap = set.snapshot({room}, now);
    auto it = snap.rooms.find(room);
    return it == snap.rooms.end() ? Users{} : it->second.user_ids;
}

std::int64_t serial_of(const TypingSet& set, const std::string& room, std::int64_t now) {
    auto snap = set.snapshot({room}, now);
    auto it = snap.rooms.find(room);
    return it == snap.rooms.end() ? 0 : it->second.serial;
}

TEST(TypingSet, StartingAndStoppingChangeTheRoomsSerialRenewingDoesNot) {
    TypingSet set(1000);
    EXPECT_EQ(set.serial(), 1000);
    EXPECT_EQ(set.first_serial(), 1000);
    EXPECT_TRUE(set.snapshot({"!r"}, 10).rooms.empty());

    EXPECT_TRUE(set.set("!r", "@b", true, 10, 30'010));
    const auto s1 = set.serial();
    EXPECT_GT(s1, 1000);
    EXPECT_EQ(serial_of(set, "!r", 20), s1);
    EXPECT_TRUE(set.set("!r", "@a", true, 20, 30'020));
    const auto s2 = serial_of(set, "!r", 20);
    EXPECT_GT(s2, s1);
    // Sorted by user ID, whatever the order they started in.
    EXPECT_EQ(typing_in(set, "!r", 30), (Users{"@a", "@b"}));

    // Renewing a user still typing is no change.
    EXPECT_FALSE(set.set("!r", "@a", true, 40, 60'000));
    EXPECT_EQ(serial_of(set, "!r", 40), s2);
    EXPECT_EQ(set.serial(), s2);
    // Stopping someone who is not typing is no change either.
    EXPECT_FALSE(set.set("!r", "@c", false, 40, 0));
    EXPECT_FALSE(set.set("!other", "@c", false, 40, 0));
    EXPECT_EQ(set.serial(), s2);

    EXPECT_TRUE(set.set("!r", "@a", false, 50, 0));
    const auto s3 = serial_of(set, "!r", 50);
    EXPECT_GT(s3, s2);
    EXPECT_EQ(typing_in(set, "!r", 50), (Users{"@b"}));
    EXPECT_TRUE(set.set("!r", "@b", false, 60, 0));
    // Nobody typing: the room stays with the serial of that change.
    auto snap = set.snapshot({"!r"}, 60);
    ASSERT_EQ(snap.rooms.count("!r"), 1u);
    EXPECT_TRUE(snap.rooms["!r"].user_ids.empty());
    EXPECT_GT(snap.rooms["!r"].serial, s3);
    EXPECT_EQ(snap.serial, snap.rooms["!r"].serial);
}

TEST(TypingSet, SerialsIncreaseAcrossRoomsAndFollowTheClockWhenAhead) {
    TypingSet set(100);
    EXPECT_TRUE(set.set("!a", "@u", true, 50, 1000));  // clock behind: previous + 1
    EXPECT_EQ(set.serial(), 101);
    EXPECT_TRUE(set.set("!b", "@u", true, 5000, 9000));  // clock ahead: the clock
    EXPECT_EQ(set.serial(), 5000);
    EXPECT_TRUE(set.set("!a", "@v", true, 5000, 9000));  // same instant: still increasing
    EXPECT_EQ(set.serial(), 5001);
    auto snap = set.snapshot({"!a", "!b", "!c"}, 5000);
    EXPECT_EQ(snap.serial, 5001);
    EXPECT_EQ(snap.rooms["!a"].serial, 5001);
    EXPECT_EQ(snap.rooms["!b"].serial, 5000);
    EXPECT_EQ(snap.rooms.count("!c"), 0u);
}

TEST(TypingSet, ExpiredUsersLeaveSnapshotsAndExpireDropsThemOnce) {
    TypingSet set(0);
    ASSERT_TRUE(set.set("!r", "@a", true, 1000, 5000));
    ASSERT_TRUE(set.set("!r", "@b", true, 1000, 8000));
    const auto before = set.serial();
    // At 5000 @a's time is up: left out of a snapshot, which changes nothing.
    EXPECT_EQ(typing_in(set, "!r", 4999), (Users{"@a", "@b"}));
    EXPECT_EQ(typing_in(set, "!r", 5000), (Users{"@b"}));
    EXPECT_EQ(set.serial(), before);

    // Too early: nothing dropped; the next one is due at 5000.
    auto early = set.expire("!r", 4000);
    EXPECT_FALSE(early.changed);
    EXPECT_EQ(early.next_until_ms, 5000);
    EXPECT_EQ(set.serial(), before);

    auto first = set.expire("!r", 5000);
    EXPECT_TRUE(first.changed);
    EXPECT_EQ(first.next_until_ms, 8000);
    EXPECT_GT(set.serial(), before);
    EXPECT_EQ(serial_of(set, "!r", 5000), set.serial());
    const auto after_first = set.serial();
    // A second timer for the same time finds nothing left to drop.
    EXPECT_FALSE(set.expire("!r", 5000).changed);
    EXPECT_EQ(set.serial(), after_first);

    auto last = set.expire("!r", 9000);
    EXPECT_TRUE(last.changed);
    EXPECT_FALSE(last.next_until_ms);
    EXPECT_TRUE(typing_in(set, "!r", 9000).empty());
    EXPECT_FALSE(set.expire("!unknown", 9000).changed);
}

TEST(TypingSet, TypingAgainAfterTheTimeWasUpIsAChange) {
    TypingSet set(0);
    ASSERT_TRUE(set.set("!r", "@a", true, 1000, 2000));
    const auto s1 = set.serial();
    // Sync already leaves @a out at 3000 (the timer has not run): typing again is a change.
    EXPECT_TRUE(set.set("!r", "@a", true, 3000, 9000));
    EXPECT_GT(set.serial(), s1);
    EXPECT_EQ(typing_in(set, "!r", 3000), (Users{"@a"}));
    // And so is stopping a user whose time is up but who was not dropped yet.
    ASSERT_TRUE(set.set("!r", "@b", true, 3000, 4000));
    const auto s2 = set.serial();
    EXPECT_TRUE(set.set("!r", "@b", false, 5000, 0));
    EXPECT_GT(set.serial(), s2);
}

}  // namespace
}  // namespace myelin::service
