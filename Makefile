# Myelin: the two commands of the README and their helpers.
#   make run    install missing packages, build Release, write ./myelin.toml on first run, serve
#   make test   install missing packages, build, run every test tier (unit, storage, integration)
# Further targets: build, test-sanitize (unit + integration under ASan/UBSan), fuzz (libFuzzer
# targets under ASan/UBSan, FUZZ_SECONDS each), bench, format, clean.

JOBS      ?= $(shell nproc)
BUILD     ?= build
ASAN      ?= build-asan
FUZZ      ?= build-fuzz
FUZZ_SECONDS ?= 30
BENCH_ARGS ?=
CONFIG    ?= myelin.toml
WERROR    ?= ON
CMAKE_ARGS = -DCMAKE_BUILD_TYPE=Release -DMYELIN_WARNINGS_AS_ERRORS=$(WERROR)

.PHONY: run test build deps test-sanitize fuzz bench format clean

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

$(CONFIG):
	@echo "writing a default config to $(CONFIG) (SQLite under ./data, http://127.0.0.1:8008)"
	$(BUILD)/myelin generate-config > $(CONFIG)

run: build
	@$(MAKE) --no-print-directory $(CONFIG)
	$(BUILD)/myelin serve --config $(CONFIG)

test: build
	cd $(BUILD) && ctest --output-on-failure -j 1

# The unit, storage and integration tiers once more, built with AddressSanitizer + UBSan.
test-sanitize: deps
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DMYELIN_SANITIZE=ON -DMYELIN_BUILD_BENCH=OFF \
	      -DMYELIN_WARNINGS_AS_ERRORS=$(WERROR)
	cmake --build $(ASAN) -j $(JOBS)
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j 1

# Every libFuzzer target (fuzz/) built with clang, ASan and UBSan, run FUZZ_SECONDS each from
# its seed corpus; fails on any crash (scripts/fuzz.sh).
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_BUILD=$(FUZZ) JOBS=$(JOBS) WERROR=$(WERROR) ./scripts/fuzz.sh

# Every benchmark, each next to its ceiling, into bench/results/REPORT.md (< 15 min, loopback
# only); BENCH_ARGS passes options on, e.g. BENCH_ARGS="--only whoami --rounds 5" or
# BENCH_ARGS="--target http://127.0.0.1:8008" (another homeserver: it sends load there).
bench: build
	./bench/run.sh $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
