# The common libraries. Dependency direction (checked by `make lint`):
#   base <- log <- config, loop, metrics <- rpc <- etcd; base <- crypto <- token;
#   base <- policy; base <- store (the key layout and value encoding in etcd);
#   base <- channel (guest channel framing, shared with sbx-init); rpc <- api (the sbx.v1 methods).

$(eval $(call module,base,$(wildcard common/base/*.c)))
$(eval $(call module,log,$(wildcard common/log/*.c)))
$(eval $(call module,config,$(wildcard common/config/*.c)))
$(eval $(call module,loop,$(wildcard common/loop/*.c)))
$(eval $(call module,metrics,$(wildcard common/metrics/*.c)))
$(eval $(call module,rpc,$(wildcard common/rpc/*.c)))
$(eval $(call module,etcd,$(wildcard common/etcd/*.c)))
$(eval $(call module,crypto,$(wildcard common/crypto/*.c)))
$(eval $(call module,token,$(wildcard common/token/*.c)))
$(eval $(call module,policy,$(wildcard common/policy/*.c)))
$(eval $(call module,store,$(wildcard common/store/*.c)))
$(eval $(call module,channel,$(wildcard common/channel/*.c)))
$(eval $(call module,wire,$(wildcard common/wire/*.c)))
$(eval $(call module,api,$(wildcard common/api/*.c)))

# Link order for static archives: dependents first.
COMMON_LIBS = $(api_LIB) $(wire_LIB) $(channel_LIB) $(store_LIB) $(policy_LIB) $(token_LIB) $(crypto_LIB) $(etcd_LIB) $(rpc_LIB) $(metrics_LIB) $(loop_LIB) $(config_LIB) $(log_LIB) $(base_LIB) $(PROTO_LIB)

ALL_TARGETS += $(COMMON_LIBS)
