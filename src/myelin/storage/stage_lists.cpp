#include "myelin/storage/stage_lists.hpp"

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace myelin::storage {

namespace {

boost::json::array to_array(const std::vector<std::string>& stages) {
    boost::json::array out;
    out.reserve(stages.size());
    for (const auto& stage : stages) out.emplace_back(stage);
    return out;
}

Error malformed(std::string_view what) {
    return errors::internal("malformed " + std::string(what) + " in a stored UIA session");
}

Result<std::vector<std::string>> from_array(const boost::json::value& value) {
    if (!value.is_array()) return malformed("stage list");
    std::vector<std::string> out;
    out.reserve(value.as_array().size());
    for (const auto& stage : value.as_array()) {
        if (!stage.is_string()) return malformed("stage list");
        out.emplace_back(stage.as_string());
    }
    return out;
}

Result<boost::json::value> parse(std::string_view text, std::string_view what) {
    boost::system::error_code ec;
    boost::json::value value = boost::json::parse(text, ec);
    if (ec) return malformed(what);
    return value;
}

}  // namespace

std::string encode_stages(const std::vector<std::string>& stages) {
    return boost::json::serialize(to_array(stages));
}

std::string encode_flows(const std::vector<std::vector<std::string>>& flows) {
    boost::json::array out;
    out.reserve(flows.size());
    for (const auto& flow : flows) out.emplace_back(to_array(flow));
    return boost::json::serialize(out);
}

Result<std::vector<std::string>> decode_stages(std::string_view text) {
    auto value = parse(text, "stage list");
    if (!value) return value.error();
    return from_array(*value);
}

Result<std::vector<std::vector<std::string>>> decode_flows(std::string_view text) {
    auto value = parse(text, "flow list");
    if (!value) return value.error();
    if (!value->is_array()) return malformed("flow list");
    std::vector<std::vector<std::string>> out;
    out.reserve(value->as_array().size());
    for (const auto& flow : value->as_array()) {
        auto stages = from_array(flow);
        if (!stages) return malformed("flow list");
        out.push_back(std::move(*stages));
    }
    return out;
}

}  // namespace myelin::storage
