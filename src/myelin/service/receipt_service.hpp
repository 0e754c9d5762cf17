#pragma once

// Read receipts and the read marker (receipts.yaml, read_markers.yaml): POST
// /rooms/{roomId}/receipt/{receiptType}/{eventId} and POST /rooms/{roomId}/read_markers.
//
// "m.read" and "m.read.private" receipts are stored (WriteTxn::put_receipt: one per room, user,
// type and thread, only moving forward) and reach /sync as m.receipt; a private one only its
// owner sees. "m.fully_read" is the read marker: the room account data m.fully_read
// {"event_id"}, which also only moves forward. Every marker of a request is written in one
// write job; after the commit the room's joined members are woken when an m.read receipt
// changed, the user alone when only private ones or the read marker did.
//
// Thread-safety: immutable after construction; coroutines may run on any network thread.

#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"
#include "myelin/service/room_service.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// One marker to move: receipt type "m.read", "m.read.private" or "m.fully_read".
struct ReadMarker {
    std::string type;
    std::string event_id;
    std::string thread_id;  // "" (unthreaded), "main" or a thread root's event ID
};

class ReceiptService {
public:
    // `db` and `clock` must outlive the service.
    ReceiptService(storage::Database& db, const Clock& clock) : db_(db), clock_(clock) {}

    // Moves the markers (checked by the caller: known types, thread_id only on receipts) in one
    // write job. Errors: 403 M_FORBIDDEN (not joined, or no such room), 404 M_NOT_FOUND (an
    // event not in the room), 400 M_INVALID_PARAM (an event not in the thread_id's thread), 503.
    boost::asio::awaitable<Result<void>> mark(Actor actor, std::string room_id,
                                              std::vector<ReadMarker> markers);

    // Wakes long-polls after each committed change. nullptr (the default): nobody is woken.
    // Set before serving; `notifier` must outlive the service.
    void set_notifier(UserNotifier* notifier) { notifier_ = notifier; }

private:
    storage::Database& db_;
    const Clock& clock_;
    UserNotifier* notifier_ = nullptr;
};

}  // namespace myelin::service
