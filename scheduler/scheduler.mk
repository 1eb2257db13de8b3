# sbx-scheduler: the daemon's code is an archive (unit tests and benchmarks link it) plus main().
SCHED_SRCS := $(filter-out scheduler/sched-main.c,$(wildcard scheduler/*.c))
$(eval $(call module,sched,$(SCHED_SRCS)))

$(BIN)/sbx-scheduler: $(O)/obj/scheduler/sched-main.o $(sched_LIB) $(COMMON_LIBS)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(LDFLAGS_ALL) -o $@ $< $(sched_LIB) $(COMMON_LIBS) $(LIBS_COMMON)

ALL_TARGETS += $(BIN)/sbx-scheduler
