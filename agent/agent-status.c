/* SPDX-License-Identifier: Apache-2.0 */
/* Observed state, written to /sbx/v1/status/<id> (this agent is that key's only writer). */
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "common/log/log.h"
#include "common/store/store.h"

static void written(int error, const Etcdserverpb__PutResponse *r, void *userdata)
{
        if (error < 0)
                log_warning_errno(error, "Failed to record a sandbox state in etcd: %m");
}

void agent_status_write(Agent *a, const char *id, Sbx__V1__SandboxState state, const char *reason,
                        uint64_t boot_duration_us, const char *guest_address)
{
        Sbx__V1__SandboxStatus st = SBX__V1__SANDBOX_STATUS__INIT;
        _cleanup_free_ char *key = NULL;
        _cleanup_free_ uint8_t *value = NULL;
        size_t n;
        int64_t now = sbx_now_ms();

        st.state = state;
        st.reason = (char *)(reason ? reason : "");
        st.node = a->cfg.name;
        st.updated_at_ms = now;
        st.boot_duration_us = boot_duration_us;
        st.guest_address = (char *)(guest_address ? guest_address : "");
        if (state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING)
                st.started_at_ms = now;
        if (state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED ||
            state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED)
                st.stopped_at_ms = now;
        if (sbx_key_new(&key, SBX_KEY_STATUS "%s", id) < 0 || sbx_store_pack(&st.base, &value, &n) < 0)
                return;
        if (sbx_etcd_put(a->etcd, key, value, n, 0, written, NULL) < 0)
                log_warning("Failed to record the state of %s in etcd", id);
}
