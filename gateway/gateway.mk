# sbx-gateway: the @deno/sandbox wire protocol in front of the two gRPC APIs. The daemon's code is
# an archive (unit tests link it) plus main(). PCRE2 runs the SDK's walk() and expandGlob()
# patterns (JavaScript regular expressions and @std/path globs).
GW_SRCS := $(filter-out gateway/gw-main.c,$(wildcard gateway/*.c))
$(eval $(call module,gw,$(GW_SRCS)))
GW_LIBS := $(shell pkg-config --libs libpcre2-8 2>/dev/null)

$(BIN)/sbx-gateway: $(O)/obj/gateway/gw-main.o $(gw_LIB) $(COMMON_LIBS)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(gw_LIB) $(COMMON_LIBS) $(LIBS_COMMON) $(GW_LIBS)

ALL_TARGETS += $(BIN)/sbx-gateway

# Unit tests of gateway/ link its archive and PCRE2 (a more specific pattern than tests.mk's).
$(TEST_BIN)/unit/gateway/%: $(O)/obj/tests/unit/gateway/%.o $(gw_LIB) $(testlib_LIB) $(COMMON_LIBS) $(TEST_PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(gw_LIB) $(testlib_LIB) $(TEST_PROTO_LIB) \
		$(COMMON_LIBS) $(LIBS_COMMON) $(GW_LIBS) $(CRITERION_LIBS)

# The fuzz targets decode with the gateway's own parsers (no PCRE2 needed).
GW_FUZZ_OBJS := $(patsubst %.c,$(O)/fuzz/obj/%.o,gateway/gw-jsonrpc.c gateway/gw-sandbox-config.c gateway/gw-values.c)
$(O)/fuzz/fuzz-gateway-rpc $(O)/fuzz/fuzz-gateway-config: $(GW_FUZZ_OBJS)
.SECONDARY: $(GW_FUZZ_OBJS)
