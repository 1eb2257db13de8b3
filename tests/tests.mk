# Test families (docs/testing.md):
#   check-unit         Criterion tests under tests/unit/, mirroring the source tree
#   check-integration  real daemons and real etcd (tests/integration/)
#   check-interop      Node's test runner + @grpc/grpc-js against our C code (tests/interop/)
#   check-sdk          the unmodified @deno/sandbox SDK against sbx-gateway on a dev cluster (tests/sdk/)
#   check-ops          deploy/: config examples, Prometheus rules and config, systemd units, and the
#                      metric names they use against real daemons (tests/ops/)
#   fuzz / check-fuzz  libFuzzer targets under tests/fuzz/ (check-fuzz replays the corpus briefly)

CRITERION_LIBS := -lcriterion
TEST_BIN := $(O)/tests

# Protocol files used only by tests (an echo service for rpc tests and interop).
TEST_PROTO_FILES := tests/proto/sbx_test.proto
GEN_HEADERS += $(call PROTO_GEN_H,$(TEST_PROTO_FILES))
TEST_PROTO_OBJS := $(patsubst $(O)/gen/%.c,$(O)/obj/gen/%.o,$(call PROTO_GEN_C,$(TEST_PROTO_FILES)))
TEST_PROTO_LIB := $(O)/lib/libsbx-testproto.a
$(TEST_PROTO_LIB): $(TEST_PROTO_OBJS)
	$(call msg,AR,$@)
	$(Q)mkdir -p $(@D) && rm -f $@ && $(AR) rcs $@ $^



# The fixture library: start and stop real etcd, pick free ports, make temp dirs, TLS test certs.
$(eval $(call module,testlib,$(wildcard tests/lib/*.c)))

UNIT_TEST_SRCS := $(shell find tests/unit -name 'test-*.c' 2>/dev/null)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(TEST_BIN)/unit/%,$(UNIT_TEST_SRCS))

# Unit tests link the program archives too (a test of scheduler/x.c links libsbx-sched.a, not the
# daemon); the linker takes only the objects a test uses.
PROGRAM_LIBS = $(sched_LIB) $(agent_LIB)

$(TEST_BIN)/unit/%: $(O)/obj/tests/unit/%.o $(testlib_LIB) $(PROGRAM_LIBS) $(COMMON_LIBS) $(TEST_PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(testlib_LIB) $(TEST_PROTO_LIB) $(PROGRAM_LIBS) \
		$(COMMON_LIBS) $(LIBS_COMMON) $(AGENT_LIBS) $(CRITERION_LIBS)

# Integration tests: Criterion binaries that drive real daemons, real etcd and (later) microVMs.
INTEGRATION_TEST_SRCS := $(shell find tests/integration -name 'test-*.c' 2>/dev/null)
INTEGRATION_TESTS := $(patsubst tests/integration/%.c,$(TEST_BIN)/integration/%,$(INTEGRATION_TEST_SRCS))

$(TEST_BIN)/integration/%: $(O)/obj/tests/integration/%.o $(testlib_LIB) $(COMMON_LIBS) $(TEST_PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(testlib_LIB) $(TEST_PROTO_LIB) $(COMMON_LIBS) \
		$(LIBS_COMMON) $(CRITERION_LIBS)

# Helper programs the tests drive (C servers and clients for interop, etc.).
TEST_PROGRAM_SRCS := $(wildcard tests/programs/*.c)
TEST_PROGRAMS := $(patsubst tests/programs/%.c,$(TEST_BIN)/programs/%,$(TEST_PROGRAM_SRCS))
$(TEST_BIN)/programs/%: $(O)/obj/tests/programs/%.o $(TEST_PROTO_LIB) $(testlib_LIB) $(COMMON_LIBS)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(testlib_LIB) $(TEST_PROTO_LIB) $(COMMON_LIBS) $(LIBS_COMMON)

# The Cloud Hypervisor contract client drives the agent's VMM driver, so it links the agent archive
# and the agent's libraries (libcurl, libnl) as well (tests/interop/ch-contract.test.mjs runs it).
$(TEST_BIN)/programs/ch-contract-client: $(O)/obj/tests/programs/ch-contract-client.o $(agent_LIB) $(COMMON_LIBS)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(agent_LIB) $(COMMON_LIBS) $(LIBS_COMMON) $(AGENT_LIBS)

# Objects of test binaries are intermediate in make's eyes; keep them so relinks do not recompile.
.SECONDARY: $(patsubst tests/%.c,$(O)/obj/tests/%.o,$(UNIT_TEST_SRCS) $(TEST_PROGRAM_SRCS) $(INTEGRATION_TEST_SRCS))

tests: $(UNIT_TESTS) $(TEST_PROGRAMS) $(INTEGRATION_TESTS)
.PHONY: tests

# Each binary runs on its own; Criterion prints its synthesis line and exits non-zero on failure.
check-unit: $(UNIT_TESTS) $(TEST_PROGRAMS)
	$(Q)tests/lib/run-unit $(UNIT_TESTS)
.PHONY: check-unit

# The sandbox tests boot real microVMs from the image (built once per machine, then cached).
check-integration: all $(INTEGRATION_TESTS) $(TEST_PROGRAMS) image
	$(Q)tests/lib/run-unit $(INTEGRATION_TESTS)
	$(Q)SBX_BIN_DIR=$(BIN) tests/integration/dev-cluster-test
.PHONY: check-integration

# The same end-to-end tests with every daemon and the CLI built with ASan + UBSan:
# `make SAN=1 check-sanitized` (the guest image stays the usual one, from `make image`). A memory
# error in a daemon fails its test; so does a leak, through the daemon's exit status where a test
# checks it (the integration tests do).
check-sanitized: all $(INTEGRATION_TESTS) $(TEST_PROGRAMS)
	$(Q)SBX_BUILD_DIR=$(O) tests/lib/run-unit $(INTEGRATION_TESTS)
	$(Q)tests/sdk/run $(O)
.PHONY: check-sanitized

# The @deno/sandbox SDK from npm against sbx-gateway, on a dev cluster of its own (root, the image).
check-sdk: all image
	$(Q)tests/sdk/run $(O)
.PHONY: check-sdk

check-interop: $(TEST_PROGRAMS) $(BIN)/sbx-scheduler
	$(Q)tests/interop/run $(O)
.PHONY: check-interop

# The operations files under deploy/ (tests/ops/run): the example configs are what the daemons
# print, promtool and systemd-analyze accept the Prometheus files and the units, and every metric
# the rules and the Grafana dashboard use is exported by real daemons (etcd, sbx-scheduler,
# simulated nodes and a cordoned sbx-agent; root).
check-ops: $(BIN)/sbx-scheduler $(BIN)/sbx-agent $(BIN)/sbx-jailer $(TEST_BIN)/programs/sim-agents
	$(Q)tests/ops/run $(O)
.PHONY: check-ops

# Rewrites deploy/config/*.conf.example from the daemons' --print-config (check-ops compares them).
config-examples: $(BIN)/sbx-scheduler $(BIN)/sbx-agent $(BIN)/sbx-gateway
	$(Q)$(BIN)/sbx-scheduler --print-config >deploy/config/sbx-scheduler.conf.example
	$(Q)$(BIN)/sbx-agent --print-config >deploy/config/sbx-agent.conf.example
	$(Q)$(BIN)/sbx-gateway --print-config >deploy/config/sbx-gateway.conf.example
.PHONY: config-examples

# Everything, in the order that fails fastest. Runs make deps first so a fresh machine just works.
check: deps
	$(Q)$(MAKE) --no-print-directory all tests image
	$(Q)$(MAKE) --no-print-directory lint fmt-check check-unit check-fuzz check-interop check-ops \
		check-integration check-sdk
.PHONY: check

# ---- fuzzing (clang + libFuzzer; separate objects under $(O)/fuzz) ----
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1
FUZZ_LIB_SRCS := $(wildcard common/base/*.c common/log/*.c common/config/*.c common/crypto/*.c common/token/*.c common/policy/*.c common/channel/*.c common/wire/*.c) agent/agent-console.c
FUZZ_LIB_OBJS := $(patsubst %.c,$(O)/fuzz/obj/%.o,$(FUZZ_LIB_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(O)/fuzz/%,$(FUZZ_SRCS))

$(O)/fuzz/obj/%.o: %.c | $(GEN_HEADERS)
	$(call msg,FUZZCC,$<)
	$(Q)mkdir -p $(@D) && $(FUZZ_CC) $(CPPFLAGS_ALL) -std=gnu11 $(PKG_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -g -O1 -MMD -MP -c -o $@ $<

$(O)/fuzz/fuzz-%: $(O)/fuzz/obj/tests/fuzz/fuzz-%.o $(FUZZ_LIB_OBJS) $(PROTO_OBJS)
	$(call msg,FUZZLD,$@)
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ $(LIBS_COMMON)

# Keep fuzz objects between builds (they are intermediate files of a pattern chain otherwise).
.SECONDARY: $(FUZZ_LIB_OBJS) $(patsubst tests/fuzz/%.c,$(O)/fuzz/obj/tests/fuzz/%.o,$(FUZZ_SRCS))

fuzz-build: $(FUZZ_TARGETS)
.PHONY: fuzz-build

# Runs every target for FUZZ_SECONDS, starting from (and adding to) its corpus in build/.
fuzz: $(FUZZ_TARGETS)
	$(Q)tests/fuzz/run --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)
.PHONY: fuzz

# A short replay of the seed corpora plus a few thousand runs each: keeps the targets honest in CI.
check-fuzz: $(FUZZ_TARGETS)
	$(Q)tests/fuzz/run --runs 5000 $(FUZZ_TARGETS)
.PHONY: check-fuzz
