# Protocol files: C is generated with protoc-c at build time into $(O)/gen, never committed.
# Generated headers are included from the repository root, e.g. "proto/sbx/v1/state.pb-c.h".

PROTO_FILES := proto/etcd/etcdserverpb.proto \
	proto/sbx/v1/state.proto proto/sbx/v1/sandboxes.proto proto/sbx/v1/data.proto proto/sbx/v1/guest.proto

# $(call proto_gen,proto files): rules and object lists for a set of .proto files.
PROTO_GEN_C = $(patsubst %.proto,$(O)/gen/%.pb-c.c,$(1))
PROTO_GEN_H = $(patsubst %.proto,$(O)/gen/%.pb-c.h,$(1))

$(O)/gen/%.pb-c.c $(O)/gen/%.pb-c.h: %.proto
	$(call msg,PROTOC,$<)
	$(Q)mkdir -p $(O)/gen && $(PROTOC_C) --c_out=$(O)/gen -I. $<

$(O)/obj/gen/%.o: $(O)/gen/%.c | $(GEN_HEADERS)
	$(call msg,CC,$<)
	$(Q)mkdir -p $(@D) && $(CC) $(CPPFLAGS_ALL) $(GEN_CFLAGS) -MMD -MP -c -o $@ $<

GEN_HEADERS += $(call PROTO_GEN_H,$(PROTO_FILES))

PROTO_OBJS := $(patsubst $(O)/gen/%.c,$(O)/obj/gen/%.o,$(call PROTO_GEN_C,$(PROTO_FILES)))
PROTO_LIB := $(O)/lib/libsbx-proto.a
$(PROTO_LIB): $(PROTO_OBJS)
	$(call msg,AR,$@)
	$(Q)mkdir -p $(@D) && rm -f $@ && $(AR) rcs $@ $^

# The guest links only its own protocol (and the data-plane types it imports).
GUEST_PROTO_OBJS := $(O)/obj/gen/proto/sbx/v1/guest.pb-c.o $(O)/obj/gen/proto/sbx/v1/data.pb-c.o

ALL_TARGETS += $(PROTO_LIB)
.SECONDARY: $(call PROTO_GEN_C,$(PROTO_FILES)) $(call PROTO_GEN_H,$(PROTO_FILES))
