// The token cache's open-addressing index against std::unordered_map: colliding home slots,
// wrap-around at the end of the table, backward-shift deletion, growth.

#include "myelin/auth/fingerprint_index.hpp"

#include <random>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

namespace myelin::auth::detail {
namespace {

// Keys are record numbers; each key's fingerprint comes from `fps` (so tests can force
// collisions).
struct Model {
    std::vector<std::uint32_t> fps;
    FingerprintIndex index;
    std::uint32_t find(std::uint32_t key) const {
        return index.find(fps[key], [&](std::uint32_t rec) { return rec == key; });
    }
    bool erase(std::uint32_t key) {
        return index.erase(fps[key], [&](std::uint32_t rec) { return rec == key; });
    }
};

TEST(FingerprintIndex, CollidingEntriesSurviveDeletionsInTheMiddleOfTheirRun) {
    Model m;
    // Ten keys with the same home slot (the last one of a 16-slot table: the run wraps), and
    // two with the next home slots, interleaved.
    for (std::uint32_t k = 0; k < 12; ++k) m.fps.push_back(k < 10 ? 15 : k - 10);
    for (std::uint32_t k = 0; k < 12; ++k) m.index.insert(m.fps[k], k);
    ASSERT_EQ(m.index.capacity(), 16U);
    for (std::uint32_t k = 0; k < 12; ++k) EXPECT_EQ(m.find(k), k);
    EXPECT_TRUE(m.erase(3));
    EXPECT_FALSE(m.erase(3));
    EXPECT_TRUE(m.erase(0));
    EXPECT_TRUE(m.erase(11));
    EXPECT_EQ(m.index.size(), 9U);
    for (std::uint32_t k = 0; k < 12; ++k) {
        EXPECT_EQ(m.find(k), (k == 0 || k == 3 || k == 11) ? kNoRecord : k) << k;
    }
}

TEST(FingerprintIndex, MatchesAHashMapThroughRandomInsertsErasesAndGrowth) {
    std::mt19937 rng(12345);
    Model m;
    constexpr std::uint32_t kKeys = 5000;
    for (std::uint32_t k = 0; k < kKeys; ++k) {
        m.fps.push_back(static_cast<std::uint32_t>(rng()) & 0x3FFU);  // many shared fingerprints
    }
    std::unordered_map<std::uint32_t, bool> present;
    for (int step = 0; step < 60000; ++step) {
        const std::uint32_t k = static_cast<std::uint32_t>(rng()) % kKeys;
        if (present[k]) {
            ASSERT_TRUE(m.erase(k));
            present[k] = false;
        } else {
            m.index.insert(m.fps[k], k);
            present[k] = true;
        }
        if (step % 997 == 0) {
            std::size_t n = 0;
            for (std::uint32_t q = 0; q < kKeys; ++q) {
                ASSERT_EQ(m.find(q), present[q] ? q : kNoRecord) << "step " << step;
                n += present[q] ? 1 : 0;
            }
            ASSERT_EQ(m.index.size(), n);
            ASSERT_LE(m.index.size() * 5, m.index.capacity() * 4);
        }
    }
}

TEST(FingerprintIndex, ReassignPointsAnEntryAtAnotherRecordAndClearEmpties) {
    FingerprintIndex index;
    index.insert(7, 1);
    EXPECT_TRUE(index.reassign(
        7, [](std::uint32_t r) { return r == 1; }, 2));
    EXPECT_EQ(index.find(7, [](std::uint32_t r) { return r == 2; }), 2U);
    EXPECT_FALSE(index.reassign(
        8, [](std::uint32_t) { return true; }, 3));
    index.clear();
    EXPECT_EQ(index.size(), 0U);
    EXPECT_EQ(index.find(7, [](std::uint32_t) { return true; }), kNoRecord);
    index.insert(7, 4);
    EXPECT_EQ(index.find(7, [](std::uint32_t) { return true; }), 4U);
}

TEST(RecordSlab, AddressesStayPutAcrossChunksAndFreedRecordsAreReused) {
    Slab<std::uint64_t> slab;
    std::vector<std::uint64_t*> addresses;
    for (std::uint32_t i = 0; i < 10000; ++i) {
        const std::uint32_t n = slab.allocate();
        ASSERT_EQ(n, i);
        slab.at(n) = i;
        addresses.push_back(&slab.at(n));
    }
    for (std::uint32_t i = 0; i < 10000; ++i) {
        ASSERT_EQ(&slab.at(i), addresses[i]);
        ASSERT_EQ(slab.at(i), i);
    }
    slab.free(17);
    slab.free(9000);
    const std::uint32_t a = slab.allocate();
    const std::uint32_t b = slab.allocate();
    EXPECT_TRUE((a == 17 && b == 9000) || (a == 9000 && b == 17));
    EXPECT_EQ(slab.allocate(), 10000U);
    EXPECT_EQ(slab.allocated(), 10001U);
}

}  // namespace
}  // namespace myelin::auth::detail
