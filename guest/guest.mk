# sbx-init: a static binary (it is PID 1 of an initramfs with nothing else in it). Its objects are
# built apart from the rest, without sanitizers (ASan cannot link statically, and the guest is not
# where we look for host-side bugs), from the guest, base, log and channel sources and the guest
# protocol.
GUEST_SRCS := $(wildcard guest/*.c) $(wildcard common/base/*.c) common/log/log.c common/channel/channel.c
GUEST_GEN := $(O)/gen/proto/sbx/v1/guest.pb-c.c $(O)/gen/proto/sbx/v1/data.pb-c.c
GUEST_OBJS := $(patsubst %.c,$(O)/guest-obj/%.o,$(GUEST_SRCS)) \
	$(patsubst $(O)/gen/%.c,$(O)/guest-obj/gen/%.o,$(GUEST_GEN))
GUEST_CFLAGS = -std=gnu11 -O2 -g -pipe -fno-strict-aliasing $(CFLAGS)

$(O)/guest-obj/%.o: %.c | $(GEN_HEADERS)
	$(call msg,CC,$< [guest])
	$(Q)mkdir -p $(@D) && $(CC) $(CPPFLAGS_ALL) $(GUEST_CFLAGS) $(WARNINGS) -MMD -MP -c -o $@ $<

$(O)/guest-obj/gen/%.o: $(O)/gen/%.c | $(GEN_HEADERS)
	$(call msg,CC,$< [guest])
	$(Q)mkdir -p $(@D) && $(CC) $(CPPFLAGS_ALL) $(GUEST_CFLAGS) -w -MMD -MP -c -o $@ $<

$(BIN)/sbx-init: $(GUEST_OBJS)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) -static -o $@ $^ -lprotobuf-c -ljansson

ALL_TARGETS += $(BIN)/sbx-init
.SECONDARY: $(GUEST_OBJS)
