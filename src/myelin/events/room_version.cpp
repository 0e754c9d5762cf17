#include "myelin/events/room_version.hpp"

#include <array>

namespace myelin::events {

namespace {

constexpr std::array<const RoomVersion*, 2> kSupported{&kRoomVersion10, &kRoomVersion11};

}  // namespace

const RoomVersion* find_room_version(std::string_view id) noexcept {
    for (const RoomVersion* v : kSupported) {
        if (v->id == id) return v;
    }
    return nullptr;
}

std::span<const RoomVersion* const> supported_room_versions() noexcept { return kSupported; }

}  // namespace myelin::events
