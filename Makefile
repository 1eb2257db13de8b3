# sbx — one non-recursive Makefile. Each directory contributes a *.mk fragment that adds to the
# variables below; nothing here calls make recursively.
#
#   make                  build everything into build/
#   make deps             install the Debian and npm packages the build and the tests need
#   make check            deps, build, and every test family (unit, integration, interop, ...)
#   make check-unit       Criterion unit tests only (seconds)
#   make check-ops        the operations files under deploy/ against the daemons (seconds)
#   make config-examples  rewrite deploy/config/*.conf.example from the daemons' --print-config
#   make image            the guest image into build/image (kernel and base disk cached per machine)
#   make demo             deps, build, image, a local two-region cluster, a sandbox running a command
#   make SAN=1 ...        the same with AddressSanitizer + UndefinedBehaviorSanitizer (into build/san/)
#   make fuzz             run every libFuzzer target for FUZZ_SECONDS each
#   make bench            run the benchmarks under bench/ (BENCH lines on stdout)
#   make fmt / fmt-check  apply / verify .clang-format
#   make lint             include-direction rules of docs/contributing.md
#   V=1                   show full commands

.DEFAULT_GOAL := all
SHELL := /bin/bash
.SUFFIXES:
.DELETE_ON_ERROR:

TOP := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

ifeq ($(SAN),1)
O ?= build/san
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
O ?= build
SAN_FLAGS :=
endif

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-7s %s\n' $(1) $(2);
endif

CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
AR ?= ar
PROTOC_C ?= protoc-c
NODE ?= node
NPM ?= npm

# Warnings beyond -Wall -Wextra, each chosen because it caught a real class of bug elsewhere:
#   -Wshadow (shadowed locals in long handlers), -Wformat=2 (non-literal format strings),
#   -Wmissing-prototypes (a non-static function without a header declaration), -Wstrict-prototypes
#   (`f()` meaning "any arguments"), -Wvla (stack size under attacker control), -Wpointer-arith,
#   -Wundef (typos in #if), -Wnull-dereference, -Wimplicit-fallthrough.
WARNINGS := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes -Wvla \
	-Wpointer-arith -Wundef -Wnull-dereference -Wimplicit-fallthrough -Wno-unused-parameter \
	-Wno-missing-field-initializers

PKG_LIBS := grpc gpr libprotobuf-c libuv openssl jansson libwebsockets
PKG_CFLAGS = $(shell pkg-config --cflags $(PKG_LIBS) 2>/dev/null)

OPT ?= -O2
CPPFLAGS_ALL := -I. -I$(O)/gen -D_GNU_SOURCE
CFLAGS_ALL = -std=gnu11 $(OPT) -g -pipe -fPIC -fno-strict-aliasing $(SAN_FLAGS) $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SAN_FLAGS) -pthread -Wl,--as-needed $(LDFLAGS)
# Generated protobuf-c code is not ours to warn about.
GEN_CFLAGS = -std=gnu11 $(OPT) -g -pipe -fPIC $(SAN_FLAGS) $(PKG_CFLAGS) -w

LIBS_GRPC := -lgrpc -lgpr
LIBS_COMMON = $(LIBS_GRPC) -lprotobuf-c -luv -lssl -lcrypto -ljansson -lwebsockets -lcares -lhttp_parser -lm

BIN := $(O)/bin

# Filled in by the fragments.
ALL_TARGETS :=
CLEAN_FILES :=
UNIT_TESTS :=
FUZZ_TARGETS :=
BENCH_TARGETS :=
GEN_HEADERS :=

# $(call module,name,sources): builds $(O)/lib/libsbx-<name>.a from the given sources.
define module
$(1)_SRCS := $(2)
$(1)_OBJS := $$(patsubst %.c,$(O)/obj/%.o,$(2))
$(1)_LIB := $(O)/lib/libsbx-$(1).a
$$($(1)_LIB): $$($(1)_OBJS)
	$$(call msg,AR,$$@)
	$(Q)mkdir -p $$(@D) && rm -f $$@ && $(AR) rcs $$@ $$^
endef

include proto/proto.mk
include common/common.mk
include scheduler/scheduler.mk
include guest/guest.mk
include agent/agent.mk
include cli/cli.mk
include tests/tests.mk
# After tests.mk: the gateway's unit-test and fuzz rules use its variables.
include gateway/gateway.mk
include bench/bench.mk

# Objects may include generated headers: every object waits for proto generation (order-only).
$(O)/obj/%.o: %.c | $(GEN_HEADERS)
	$(call msg,CC,$<)
	$(Q)mkdir -p $(@D) && $(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) $(WARNINGS) -MMD -MP -c -o $@ $<

all: $(ALL_TARGETS)
.PHONY: all

deps:
	$(Q)deploy/deps/install
.PHONY: deps

clean:
	rm -rf build
.PHONY: clean

fmt:
	$(Q)git ls-files -co --exclude-standard '*.c' '*.h' | xargs clang-format -i
.PHONY: fmt

fmt-check:
	$(Q)git ls-files -co --exclude-standard '*.c' '*.h' | xargs clang-format --dry-run --Werror
	@echo "fmt-check: ok"
.PHONY: fmt-check

lint:
	$(Q)tests/lib/lint-includes
.PHONY: lint

# The guest image: the kernel and the Debian base disk are cached by input hash under
# SBX_CACHE_DIR (default /var/cache/sbx); the initramfs (sbx-init) is rebuilt when sbx-init changes.
IMAGE_DIR := build/image
image: $(IMAGE_DIR)/initramfs.cpio
$(IMAGE_DIR)/initramfs.cpio: $(BIN)/sbx-init deploy/images/build deploy/images/kernel/sbx-guest.config \
		deploy/images/kernel/build-kernel deploy/images/rootfs/packages deploy/images/rootfs/customize
	$(Q)deploy/images/build $(IMAGE_DIR) $(BIN)/sbx-init
.PHONY: image

demo: deps
	@printf '\n==> Building\n'
	$(Q)$(MAKE) --no-print-directory -j$$(nproc) all
	@printf '\n==> Building the guest image (the kernel and base disk once per machine: ~10 minutes)\n'
	$(Q)$(MAKE) --no-print-directory image
	$(Q)deploy/dev/demo
.PHONY: demo

-include $(shell find $(O)/obj $(O)/guest-obj -name '*.d' 2>/dev/null)
