#pragma once

// Stored sync filters (filter.yaml): a user uploads a filter definition and gets an ID back
// (per user, counting from 0) that later /sync requests name. Thread-safety: all methods may be
// called concurrently; storage work runs on the database's threads.

#include <cstdint>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

class FilterService {
public:
    // `db` must outlive the service.
    explicit FilterService(storage::Database& db) : db_(db) {}

    // Stores the filter (a serialized JSON object the caller checked); returns its ID.
    // Errors: 503.
    boost::asio::awaitable<Result<std::int64_t>> create(std::string user_id,
                                                        std::string filter_json);

    // The user's filter `filter_id` (serialized). Errors: 404 M_NOT_FOUND, 503.
    boost::asio::awaitable<Result<std::string>> get(std::string user_id, std::int64_t filter_id);

private:
    storage::Database& db_;
};

}  // namespace myelin::service
