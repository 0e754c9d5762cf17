#pragma once

// The command line: `myelin serve`, `generate-config`, `check-config`, `admin ...`
// (app/admin_cli.hpp), `--version`.
// Exit statuses: 0 success, 1 runtime failure, 2 bad configuration or usage.

namespace myelin::app {

// Parses argv and runs the chosen command; returns the process exit status.
int run_cli(int argc, char** argv);

}  // namespace myelin::app
