// error_response: what a client may and may not learn from an error.

#include <memory>
#include <sstream>
#include <string>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include "myelin/core/log.hpp"
#include "myelin/http/response.hpp"

namespace myelin::http {
namespace {

boost::json::object body_of(const Response& r) { return boost::json::parse(r.body).as_object(); }

TEST(ErrorResponse, A500NeverShowsItsOwnTextButLogsIt) {
    std::ostringstream logged;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(logged);
    auto logger = log::app();
    logger->sinks().push_back(sink);
    const Response r = error_response(errors::internal(
        "Database error: INSERT failed (duplicate key value violates \"users_pkey\")"));
    logger->flush();
    logger->sinks().pop_back();

    EXPECT_EQ(r.status, 500);
    const auto body = body_of(r);
    EXPECT_EQ(body.at("errcode").as_string(), "M_UNKNOWN");
    EXPECT_EQ(body.at("error").as_string(), "Internal server error");
    EXPECT_EQ(r.body.find("users_pkey"), std::string::npos) << r.body;
    EXPECT_NE(logged.str().find("answered 500: Database error: INSERT failed"), std::string::npos)
        << logged.str();
}

TEST(ErrorResponse, ClientErrorsAnd503sKeepTheirTextAndExtras) {
    const Response bad = error_response(errors::bad_json("'username' must be a string"));
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(body_of(bad).at("error").as_string(), "'username' must be a string");

    const Response busy = error_response(errors::unavailable("Password hashing is overloaded", 2));
    EXPECT_EQ(busy.status, 503);
    EXPECT_EQ(body_of(busy).at("error").as_string(), "Password hashing is overloaded");

    const Response limited = error_response(errors::limit_exceeded(1500));
    EXPECT_EQ(body_of(limited).at("retry_after_ms").as_int64(), 1500);
}

}  // namespace
}  // namespace myelin::http
