# Benchmarks (docs/benchmarks.md). `make bench` builds the C bench programs, the C echo server and
# sbx-scheduler, then bench/run measures common/rpc against @grpc/grpc-js, common/etcd against the
# npm etcd3 client, and sbx-scheduler's placements against the raw etcd writes they cause, on this
# machine, and prints one BENCH line per result. Benchmarks report; they never fail
# the build on a missed target.

BENCH_SRCS := $(wildcard bench/*.c)
BENCH_TARGETS += $(patsubst bench/%.c,$(O)/bench/%,$(BENCH_SRCS))
# Keep the objects (they are intermediate files of the pattern rule below).
.SECONDARY: $(patsubst bench/%.c,$(O)/obj/bench/%.o,$(BENCH_SRCS))

# Linked like the test programs: they use the Echo service and the test protocol.
$(O)/bench/%: $(O)/obj/bench/%.o $(TEST_PROTO_LIB) $(testlib_LIB) $(COMMON_LIBS)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(testlib_LIB) $(TEST_PROTO_LIB) $(COMMON_LIBS) $(LIBS_COMMON)

# egress-bench uses the test fixtures only (real agent, fake internet), like the tests.
# vm-bench drives the QEMU driver and the guest channel of the agent directly, for its baseline.
$(O)/bench/vm-bench: $(O)/obj/bench/vm-bench.o $(agent_LIB) $(TEST_PROTO_LIB) $(testlib_LIB) $(COMMON_LIBS)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(agent_LIB) $(testlib_LIB) $(TEST_PROTO_LIB) $(COMMON_LIBS) \
		$(LIBS_COMMON) $(AGENT_LIBS)

# sched-bench runs the real scheduler (it finds it under $(O)/bin through SBX_BUILD_DIR).
bench-build: $(BENCH_TARGETS) $(TEST_BIN)/programs/echo-server $(BIN)/sbx-scheduler $(BIN)/sbx-agent \
		$(BIN)/sbx-jailer $(BIN)/sbx-init $(BIN)/sbx-gateway $(BIN)/sbx image
.PHONY: bench-build

bench: bench-build
	$(Q)bench/run $(O)
.PHONY: bench

# `make tests` (and so `make check`) builds the bench programs, so API changes cannot break them
# unnoticed.
tests: $(BENCH_TARGETS)
