# sbx-agent and sbx-jailer. The agent's code is an archive (unit tests link it) plus main(); the
# jailer is a separate, tiny program that confines each VMM before exec'ing it.
AGENT_SRCS := $(filter-out agent/agent-main.c agent/jailer.c,$(wildcard agent/*.c))
$(eval $(call module,agent,$(AGENT_SRCS)))
# libcurl talks to Cloud Hypervisor's REST API on its unix socket (agent-vmm-ch.c).
AGENT_LIBS := $(shell pkg-config --libs libnl-route-3.0 libnftables libcurl 2>/dev/null)
PKG_CFLAGS_AGENT := $(shell pkg-config --cflags libnl-route-3.0 libcurl 2>/dev/null)
$(O)/obj/agent/%.o: CFLAGS += $(PKG_CFLAGS_AGENT)
$(O)/obj/tests/%.o: CFLAGS += $(PKG_CFLAGS_AGENT)

$(BIN)/sbx-agent: $(O)/obj/agent/agent-main.o $(agent_LIB) $(COMMON_LIBS)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(agent_LIB) $(COMMON_LIBS) $(LIBS_COMMON) $(AGENT_LIBS)

$(BIN)/sbx-jailer: $(O)/obj/agent/jailer.o $(base_LIB)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(base_LIB)

ALL_TARGETS += $(BIN)/sbx-agent $(BIN)/sbx-jailer
