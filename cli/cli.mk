# sbx: the command-line client. Its code is linked straight into the binary (nothing else links it).
CLI_SRCS := $(wildcard cli/*.c)
CLI_OBJS := $(patsubst %.c,$(O)/obj/%.o,$(CLI_SRCS))

$(BIN)/sbx: $(CLI_OBJS) $(COMMON_LIBS)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJS) $(COMMON_LIBS) $(LIBS_COMMON)

ALL_TARGETS += $(BIN)/sbx
