#include "myelin/api/router.hpp"

#include <array>

namespace myelin::api {
namespace {

std::vector<std::string> split(std::string_view path) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= path.size()) {
        auto slash = path.find('/', start);
        if (slash == std::string_view::npos) slash = path.size();
        out.emplace_back(path.substr(start, slash - start));
        start = slash + 1;
    }
    return out;
}

void append_method(std::string& allow, http::Method m) {
    auto name = http::method_name(m);
    if (allow.find(name) != std::string::npos) return;
    if (!allow.empty()) allow += ", ";
    allow += name;
}

}  // namespace

void Router::add(Route route) {
    std::vector<std::string> full_paths;
    switch (route.mount) {
        case Mount::kClient:
            full_paths = {"/_matrix/client/v3" + route.path, "/_matrix/client/r0" + route.path};
            break;
        case Mount::kClientV1:
            full_paths = {"/_matrix/client/v1" + route.path};
            break;
        case Mount::kExact:
            full_paths = {route.path};
            break;
    }
    const std::size_t index = routes_.size();
    routes_.push_back(std::move(route));
    for (const auto& p : full_paths) {
        if (p.find('{') == std::string::npos) {
            exact_[p].push_back(index);
        } else {
            templated_.push_back(Entry{split(p), index});
        }
    }
}

Router::Match Router::match(http::Method method, std::string_view path) const {
    Match m;
    // Of every route with this path, for the Allow header. A fixed array rather than a vector:
    // match() runs for every request and a vector would allocate each time.
    std::array<http::Method, 32> methods{};
    std::size_t method_count = 0;
    auto consider = [&](std::size_t index, std::vector<std::string> params) {
        m.path_known = true;
        const Route& r = routes_[index];
        if (method_count < methods.size()) methods[method_count++] = r.method;
        if (!m.route && r.method == method) {
            m.route = &r;
            m.params = std::move(params);
        }
    };
    if (auto it = exact_.find(path); it != exact_.end()) {
        for (auto index : it->second) consider(index, {});
    }
    if (!m.route) {
        std::vector<std::string> segments;
        bool split_done = false;
        for (const auto& entry : templated_) {
            if (!split_done) {
                segments = split(path);
                split_done = true;
            }
            if (entry.segments.size() != segments.size()) continue;
            std::vector<std::string> params;
            bool ok = true;
            for (std::size_t i = 0; i < segments.size() && ok; ++i) {
                const auto& t = entry.segments[i];
                if (!t.empty() && t.front() == '{') {
                    if (segments[i].empty()) ok = false;
                    params.push_back(segments[i]);
                } else {
                    ok = t == segments[i];
                }
            }
            if (ok) consider(entry.route_index, std::move(params));
        }
    }
    if (m.path_known && !m.route) {
        for (std::size_t i = 0; i < method_count; ++i) append_method(m.allow, methods[i]);
        append_method(m.allow, http::Method::kOptions);
    }
    return m;
}

}  // namespace myelin::api
