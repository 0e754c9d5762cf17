// The myelin binary: parses the command line and hands over to myelin::app::run_cli.
#include "myelin/app/cli.hpp"

int main(int argc, char** argv) { return myelin::app::run_cli(argc, argv); }
