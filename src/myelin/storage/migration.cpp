#include "myelin/storage/migration.hpp"

#include <fmt/format.h>

namespace myelin::storage {

Error schema_too_new(int version, int supported) {
    return errors::internal(fmt::format(
        "database schema version {} is newer than this myelin build supports ({}); upgrade myelin",
        version, supported));
}

}  // namespace myelin::storage
