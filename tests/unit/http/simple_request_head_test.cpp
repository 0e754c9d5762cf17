#include "myelin/http/simple_request_head.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <gtest/gtest.h>

namespace myelin::http {
namespace {

namespace bhttp = boost::beast::http;

std::optional<SimpleRequestHead> read_head(std::string_view bytes, std::size_t limit) {
    SimpleRequestHead head;
    if (!parse_simple_request_head(bytes, limit, head)) return std::nullopt;
    return head;
}

constexpr std::size_t kLimit = 8192;

const std::string kWrk =
    "GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: 127.0.0.1:8008\r\n"
    "Authorization: Bearer mya_0123456789abcdefghijABCDEFGHIJ0123456789abc_0AbCdE\r\n\r\n";

// The first value of `name` as Beast's parser saw it ("" when absent).
std::string first_field(const bhttp::request<bhttp::string_body>& m, std::string_view name) {
    for (const auto& f : m) {
        if (boost::beast::iequals(f.name_string(), name)) return std::string(f.value());
    }
    return {};
}

// Every head the fast reader accepts must be read the same way by Beast: complete, no body, the
// same method, target, keep-alive, fields and length. Returns whether the fast reader accepted.
bool check_against_beast(const std::string& bytes) {
    auto head = read_head(bytes, kLimit);
    if (!head) return false;
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(kLimit);
    parser.eager(true);
    boost::beast::error_code ec;
    const std::size_t used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
    EXPECT_FALSE(ec) << ec.message() << " for " << bytes;
    EXPECT_TRUE(parser.is_header_done()) << bytes;
    EXPECT_TRUE(parser.is_done()) << "Beast expects a body: " << bytes;
    EXPECT_EQ(used, head->header_bytes) << bytes;
    const auto& m = parser.get();
    EXPECT_EQ(m.version(), 11);
    EXPECT_EQ(std::string_view(m.method_string()), head->method_text);
    EXPECT_EQ(std::string_view(m.target()), head->target);
    EXPECT_EQ(parser.keep_alive(), head->keep_alive) << bytes;
    EXPECT_EQ(first_field(m, "Authorization"), head->authorization);
    EXPECT_EQ(first_field(m, "Content-Type"), head->content_type);
    EXPECT_EQ(first_field(m, "User-Agent"), head->user_agent);
    EXPECT_EQ(first_field(m, "X-Forwarded-For"), head->forwarded_for);
    return true;
}

TEST(SimpleRequestHead, ReadsWhatLoadGeneratorsAndClientsSend) {
    ASSERT_TRUE(check_against_beast(kWrk));
    auto head = read_head(kWrk, kLimit);
    EXPECT_EQ(head->method, Method::kGet);
    EXPECT_EQ(head->target, "/_matrix/client/v3/account/whoami");
    EXPECT_EQ(head->authorization, "Bearer mya_0123456789abcdefghijABCDEFGHIJ0123456789abc_0AbCdE");
    EXPECT_EQ(head->header_bytes, kWrk.size());
    EXPECT_TRUE(head->keep_alive);

    EXPECT_TRUE(check_against_beast(
        "GET /_matrix/client/versions?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: \tcurl/8 x \t\r\n"
        "Accept: */*\r\nConnection: Keep-Alive\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n"
        "content-type: application/json\r\nAUTHORIZATION: Bearer a\r\n"
        "Authorization: Bearer second\r\n\r\n"));
    EXPECT_TRUE(check_against_beast("OPTIONS /x HTTP/1.1\r\n\r\n"));
    EXPECT_TRUE(check_against_beast("DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n"));
    EXPECT_TRUE(check_against_beast("HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n"));
    EXPECT_TRUE(check_against_beast("POST /x HTTP/1.1\r\nHost: h\r\n\r\n"));
}

TEST(SimpleRequestHead, LeavesPipelinedBytesAlone) {
    const std::string two = kWrk + kWrk;
    auto head = read_head(two, kLimit);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->header_bytes, kWrk.size());
}

TEST(SimpleRequestHead, DeclinesWhatItLeavesToBeast) {
    const std::vector<std::string> declined = {
        "",                                        // nothing yet
        "GET /x HTTP/1.1\r\nHost: h\r\n",          // incomplete
        "GET /x HTTP/1.1\r\nHost: h\r\n\r",        // incomplete
        "GET /x HTTP/1.0\r\n\r\n",                 // HTTP/1.0 keep-alive rules
        "get /x HTTP/1.1\r\n\r\n",                 // not a method Beast knows
        "PROPFIND /x HTTP/1.1\r\n\r\n",            // unusual method
        "GET  /x HTTP/1.1\r\n\r\n",                // double space
        "GET /x HTTP/1.1\n\n",                     // bare LF
        "GET /x HTTP/1.1\r\nHost: h\n\r\n",        // bare LF in a field
        "GET /a\x80 HTTP/1.1\r\n\r\n",             // obs-text in the target
        "GET /x HTTP/1.1\r\nA: b\x01\r\n\r\n",     // control character in a value
        "GET /x HTTP/1.1\r\nA: \xc3\xa9\r\n\r\n",  // obs-text in a value
        "GET /x HTTP/1.1\r\nA:\r\n\r\n",           // empty value
        "GET /x HTTP/1.1\r\nA b: c\r\n\r\n",       // space in a name
        "GET /x HTTP/1.1\r\nA : c\r\n\r\n",        // space before the colon
        "GET /x HTTP/1.1\r\n: c\r\n\r\n",          // empty name
        "GET /x HTTP/1.1\r\nA: b\r\n c\r\n\r\n",   // obs-fold
        "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /x HTTP/1.1\r\nexpect: 100-continue\r\n\r\n",
        "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n",
        "GET /x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        "GET /x HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n",
        "\r\nGET /x HTTP/1.1\r\n\r\n",
    };
    for (const auto& bytes : declined) {
        EXPECT_FALSE(read_head(bytes, kLimit)) << bytes;
    }
    // Over the limit: Beast answers 431.
    const std::string big = "GET /x HTTP/1.1\r\nA: " + std::string(200, 'a') + "\r\n\r\n";
    EXPECT_FALSE(read_head(big, 100));
    EXPECT_TRUE(read_head(big, big.size()));
}

// Every variant of a request with one byte replaced (by bytes that matter to HTTP's grammar) or
// cut short: whatever the fast reader accepts, Beast reads the same way.
TEST(SimpleRequestHead, AgreesWithBeastOnEveryOneByteVariant) {
    const std::string base =
        "GET /_matrix/client/v3/account/whoami?a=b HTTP/1.1\r\nHost: h:1\r\n"
        "X-Forwarded-For: 1.2.3.4\r\nUser-Agent: u a\r\nContent-Type: t/j\r\n"
        "Connection: keep-alive\r\nAuthorization: Bearer tok\r\n\r\n";
    const std::string interesting = std::string(" \t\r\n:\x00\x7f\x80\xff/aA,", 14);
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < base.size(); ++i) {
        for (char c : interesting) {
            std::string variant = base;
            variant[i] = c;
            if (check_against_beast(variant)) ++accepted;
        }
        if (check_against_beast(base.substr(0, i))) ++accepted;
        std::string removed = base;
        removed.erase(i, 1);
        if (check_against_beast(removed)) ++accepted;
    }
    EXPECT_GT(accepted, base.size());  // most letter swaps stay simple
}

}  // namespace
}  // namespace myelin::http
