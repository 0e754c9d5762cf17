#include "myelin/core/utf8.hpp"

#include <string>

#include <gtest/gtest.h>

namespace myelin {
namespace {

TEST(Utf8, WellFormedTextPasses) {
    EXPECT_TRUE(is_valid_utf8(""));
    EXPECT_TRUE(is_valid_utf8("plain ascii"));
    EXPECT_TRUE(is_valid_utf8(std::string("nul\0inside", 10)));
    EXPECT_TRUE(is_valid_utf8("\xc3\xa9"));          // U+00E9
    EXPECT_TRUE(is_valid_utf8("\xd0\xb0lice"));      // Cyrillic a
    EXPECT_TRUE(is_valid_utf8("\xe2\x80\xae"));      // U+202E
    EXPECT_TRUE(is_valid_utf8("\xed\x9f\xbf"));      // U+D7FF, just below the surrogates
    EXPECT_TRUE(is_valid_utf8("\xf0\x9f\x98\x80"));  // U+1F600
    EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
}

TEST(Utf8, MalformedTextFails) {
    for (const char* bad : {
             "\xff",              // never in UTF-8
             "\x80",              // lone continuation byte
             "\xc0\xaf",          // overlong '/'
             "\xc1\xbf",          // overlong
             "\xe0\x80\xaf",      // overlong '/' in three bytes
             "\xf0\x80\x80\xaf",  // overlong in four bytes
             "\xed\xa0\x80",      // U+D800, a surrogate
             "\xf4\x90\x80\x80",  // above U+10FFFF
             "\xf5\x80\x80\x80",  // lead byte out of range
             "\xc3",              // truncated
             "\xe2\x80",          // truncated
             "a\xc3(",            // bad continuation
         }) {
        EXPECT_FALSE(is_valid_utf8(bad)) << testing::PrintToString(std::string(bad));
    }
}

}  // namespace
}  // namespace myelin
