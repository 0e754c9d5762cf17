#include "myelin/http/cors.hpp"

#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace myelin::http {
namespace {

TEST(Cors, HeadersAreTheMatrixSet) {
    auto headers = cors_headers();
    ASSERT_EQ(headers.size(), 4u);
    auto find = [&](std::string_view name) -> std::string {
        for (const auto& h : headers) {
            if (h.name == name) return std::string(h.value);
        }
        return "<missing>";
    };
    EXPECT_EQ(find("Access-Control-Allow-Origin"), "*");
    EXPECT_EQ(find("Access-Control-Allow-Methods"), "GET, POST, PUT, DELETE, OPTIONS");
    EXPECT_EQ(find("Access-Control-Allow-Headers"),
              "X-Requested-With, Content-Type, Authorization");
    EXPECT_EQ(find("Access-Control-Expose-Headers"), "Retry-After, X-Request-Id");
}

}  // namespace
}  // namespace myelin::http
