#pragma once

// auth/ keeps calling ensure_sodium() by its old name; the function lives in core/ so that
// events/ (which does not depend on auth/) shares the same once-flag.

#include "myelin/core/sodium_init.hpp"

namespace myelin::auth {

using ::myelin::ensure_sodium;

}  // namespace myelin::auth
