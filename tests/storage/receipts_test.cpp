// Read receipts on every backend (database.hpp: put_receipt, room_receipts_since): one receipt
// per (room, user, type, thread) that only moves forward, each stored change at the next
// position of the global receipts stream, and private receipts read only by their owner.

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"

#include "test_database.hpp"

namespace myelin::storage {
namespace {

ReceiptRecord make_receipt(const std::string& room, const std::string& user,
                           const std::string& type, const std::string& event_id,
                           std::int64_t event_pos, std::string thread = "") {
    ReceiptRecord r;
    r.room_id = room;
    r.user_id = user;
    r.receipt_type = type;
    r.thread_id = std::move(thread);
    r.event_id = event_id;
    r.event_stream_ordering = event_pos;
    r.ts = 5000 + event_pos;
    return r;
}

class ReceiptsTest : public testing::BackendTest {
protected:
    std::optional<std::int64_t> put(const ReceiptRecord& r) {
        auto out = write_sync<std::optional<std::int64_t>>(
            *db_, [r](WriteTxn& txn) { return txn.put_receipt(r); });
        EXPECT_TRUE(out) << (out ? "" : out.error().message);
        return out ? *out : std::nullopt;
    }
    std::vector<ReceiptRecord> since(const std::string& room, std::int64_t after,
                                     const std::string& viewer) {
        auto out = read_sync<std::vector<ReceiptRecord>>(
            *db_, [=](ReadTxn& txn) { return txn.room_receipts_since(room, after, viewer); });
        EXPECT_TRUE(out) << (out ? "" : out.error().message);
        return out ? *out : std::vector<ReceiptRecord>{};
    }
    std::int64_t position() {
        auto out = read_sync<std::int64_t>(
            *db_, [](ReadTxn& txn) { return txn.stream_position("", "receipts"); });
        EXPECT_TRUE(out);
        return out ? *out : -1;
    }
};

TEST_P(ReceiptsTest, EveryChangeTakesTheNextPositionAndRoundTrips) {
    EXPECT_EQ(position(), 0);
    const auto p1 = put(make_receipt("!r:x", "@alice:x", "m.read", "$a", 3));
    const auto p2 = put(make_receipt("!r:x", "@bob:x", "m.read", "$b", 4, "main"));
    const auto p3 = put(make_receipt("!s:x", "@alice:x", "m.read", "$c", 7));
    ASSERT_TRUE(p1 && p2 && p3);
    EXPECT_LT(0, *p1);
    EXPECT_LT(*p1, *p2);
    EXPECT_LT(*p2, *p3);
    EXPECT_EQ(position(), *p3);

    auto all = since("!r:x", 0, "@carol:x");
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].room_id, "!r:x");
    EXPECT_EQ(all[0].user_id, "@alice:x");
    EXPECT_EQ(all[0].receipt_type, "m.read");
    EXPECT_EQ(all[0].thread_id, "");
    EXPECT_EQ(all[0].event_id, "$a");
    EXPECT_EQ(all[0].event_stream_ordering, 3);
    EXPECT_EQ(all[0].ts, 5003);
    EXPECT_EQ(all[0].stream_pos, *p1);
    EXPECT_EQ(all[1].user_id, "@bob:x");
    EXPECT_EQ(all[1].thread_id, "main");
    // Only those after the position, and only of the room.
    auto later = since("!r:x", *p1, "@carol:x");
    ASSERT_EQ(later.size(), 1u);
    EXPECT_EQ(later[0].event_id, "$b");
    EXPECT_TRUE(since("!r:x", *p3, "@carol:x").empty());
    EXPECT_TRUE(since("!none:x", 0, "@carol:x").empty());
}

TEST_P(ReceiptsTest, AReceiptOnlyMovesForwardPerTypeAndThread) {
    const auto first = put(make_receipt("!r:x", "@alice:x", "m.read", "$e5", 5));
    ASSERT_TRUE(first);
    // The same event or an older one: ignored, no position taken.
    EXPECT_FALSE(put(make_receipt("!r:x", "@alice:x", "m.read", "$e5", 5)));
    EXPECT_FALSE(put(make_receipt("!r:x", "@alice:x", "m.read", "$e2", 2)));
    EXPECT_EQ(position(), *first);
    // Another thread or type is a receipt of its own, older event or not.
    EXPECT_TRUE(put(make_receipt("!r:x", "@alice:x", "m.read", "$e2", 2, "main")));
    EXPECT_TRUE(put(make_receipt("!r:x", "@alice:x", "m.read.private", "$e2", 2)));
    // A newer event replaces the stored receipt and moves it to the end of the stream.
    const auto moved = put(make_receipt("!r:x", "@alice:x", "m.read", "$e9", 9));
    ASSERT_TRUE(moved);
    auto all = since("!r:x", 0, "@alice:x");
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all.back().event_id, "$e9");
    EXPECT_EQ(all.back().thread_id, "");
    EXPECT_EQ(all.back().stream_pos, *moved);
    int unthreaded_read = 0;
    for (const auto& r : all) {
        if (r.receipt_type == "m.read" && r.thread_id.empty()) ++unthreaded_read;
    }
    EXPECT_EQ(unthreaded_read, 1);
}

TEST_P(ReceiptsTest, PrivateReceiptsAreReadOnlyByTheirOwner) {
    ASSERT_TRUE(put(make_receipt("!r:x", "@alice:x", "m.read.private", "$p", 4)));
    ASSERT_TRUE(put(make_receipt("!r:x", "@bob:x", "m.read", "$q", 5)));
    auto for_alice = since("!r:x", 0, "@alice:x");
    ASSERT_EQ(for_alice.size(), 2u);
    EXPECT_EQ(for_alice[0].receipt_type, "m.read.private");
    auto for_bob = since("!r:x", 0, "@bob:x");
    ASSERT_EQ(for_bob.size(), 1u);
    EXPECT_EQ(for_bob[0].receipt_type, "m.read");
}

TEST_P(ReceiptsTest, ARolledBackJobLeavesNoReceiptAndNoPosition) {
    auto failed = write_sync<void>(*db_, [](WriteTxn& txn) -> Result<void> {
        auto r = txn.put_receipt(make_receipt("!r:x", "@alice:x", "m.read", "$a", 3));
        if (!r) return r.error();
        return errors::internal("roll back");
    });
    EXPECT_FALSE(failed);
    EXPECT_TRUE(since("!r:x", 0, "@alice:x").empty());
    EXPECT_EQ(position(), 0);
}

MYELIN_INSTANTIATE_ON_BACKENDS(ReceiptsTest);

}  // namespace
}  // namespace myelin::storage
