// The entry point of myelin_micro_bench, the one binary that bench/CMakeLists.txt builds from
// every bench/micro/*.cpp (it links benchmark::benchmark, not benchmark_main).
//
// main() is a weak symbol on purpose: if another file of this folder brings its own
// BENCHMARK_MAIN(), the linker takes that strong definition and drops this one, so the target
// links whether or not such a file exists.

#include <benchmark/benchmark.h>

__attribute__((weak)) int main(int argc, char** argv) {
    char arg0_default[] = "myelin_micro_bench";
    char* args_default = arg0_default;
    if (argv == nullptr) {
        argc = 1;
        argv = &args_default;
    }
    ::benchmark::Initialize(&argc, argv);
    if (::benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    ::benchmark::RunSpecifiedBenchmarks();
    ::benchmark::Shutdown();
    return 0;
}
