// The handler of Boost's debug assertions (BOOST_ENABLE_ASSERT_DEBUG_HANDLER, set for every
// target by CMakeLists.txt): builds with NDEBUG compile BOOST_ASSERT away exactly as before;
// builds without it (Debug, the sanitizer and fuzz builds) get assert()'s behaviour, a message
// on stderr and abort(), for every assertion but one that is known to be wrong.
//
// That one: Boost.Beast <= 1.85 asserts `n >= 5` in basic_parser::parse_chunk_header when a
// chunked body whose first chunk is the last ("0\r\n") is followed by a single further byte in a
// later read. The code after it is correct (it answers need_more); upstream fixed the assertion
// (boostorg/beast#2861, Boost 1.86). Without this, any client could abort a debug build of the
// server by sending such a body in small pieces (found by fuzz/fuzz_http_request).

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <boost/assert.hpp>
#include <boost/version.hpp>

namespace {

bool is_known_false_assertion(std::string_view expr, std::string_view function,
                              std::string_view file) {
#if BOOST_VERSION < 108600
    return expr == "n >= 5" && function.find("parse_chunk_header") != std::string_view::npos &&
           file.ends_with("boost/beast/http/impl/basic_parser.ipp");
#else
    (void)expr;
    (void)function;
    (void)file;
    return false;
#endif
}

}  // namespace

namespace boost {

void assertion_failed(char const* expr, char const* function, char const* file, long line) {
    if (is_known_false_assertion(expr, function, file)) return;
    std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed.\n", file, line, function, expr);
    std::abort();
}

void assertion_failed_msg(char const* expr, char const* msg, char const* function, char const* file,
                          long line) {
    if (is_known_false_assertion(expr, function, file)) return;
    std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed: %s\n", file, line, function, expr,
                 msg);
    std::abort();
}

}  // namespace boost
