// The parts of a sync filter /sync applies: room.timeline limit/types/not_types/senders/
// not_senders and room.rooms/not_rooms; wrong shapes count as absent, the limit is clamped.

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "myelin/service/sync_service.hpp"

namespace myelin::service {
namespace {

SyncFilter parse(std::string_view text) {
    return parse_sync_filter(boost::json::parse(text).as_object());
}

TEST(SyncFilter, DefaultsWithoutARoomFilter) {
    const SyncFilter f = parse(R"({"presence": {"types": []}})");
    EXPECT_EQ(f.timeline_limit, 10);
    EXPECT_FALSE(f.timeline_types.has_value());
    EXPECT_FALSE(f.rooms.has_value());
    EXPECT_TRUE(f.not_rooms.empty());
}

TEST(SyncFilter, ReadsTimelineAndRoomLists) {
    const SyncFilter f = parse(R"({"room": {"rooms": ["!a:x"], "not_rooms": ["!b:x"],
        "timeline": {"limit": 3, "types": ["m.room.message"], "not_types": ["m.room.member"],
                     "senders": ["@a:x"], "not_senders": ["@b:x"]}}})");
    EXPECT_EQ(f.timeline_limit, 3);
    EXPECT_EQ(f.timeline_types, std::vector<std::string>{"m.room.message"});
    EXPECT_EQ(f.timeline_not_types, std::vector<std::string>{"m.room.member"});
    EXPECT_EQ(f.timeline_senders, std::vector<std::string>{"@a:x"});
    EXPECT_EQ(f.timeline_not_senders, std::vector<std::string>{"@b:x"});
    EXPECT_EQ(f.rooms, std::vector<std::string>{"!a:x"});
    EXPECT_EQ(f.not_rooms, std::vector<std::string>{"!b:x"});
}

TEST(SyncFilter, ClampsTheLimitAndIgnoresWrongShapes) {
    EXPECT_EQ(parse(R"({"room": {"timeline": {"limit": 100000}}})").timeline_limit, 1000);
    EXPECT_EQ(parse(R"({"room": {"timeline": {"limit": -5}}})").timeline_limit, 0);
    const SyncFilter f = parse(R"({"room": {"timeline": {"limit": "3", "types": "m.x"}}})");
    EXPECT_EQ(f.timeline_limit, 10);
    EXPECT_FALSE(f.timeline_types.has_value());
    EXPECT_EQ(parse(R"({"room": []})").timeline_limit, 10);
}

}  // namespace
}  // namespace myelin::service
