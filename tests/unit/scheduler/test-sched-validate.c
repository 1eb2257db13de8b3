/* SPDX-License-Identifier: Apache-2.0 */
/* scheduler/sched-validate.c: defaults and limits of create requests. (The refusal messages are
 * checked end to end in tests/integration/test-scheduler.c.) */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched-validate.h"

static bool known(const char *region, void *userdata)
{
        return strcmp(region, "ams") == 0 || strcmp(region, "ord") == 0;
}

static SchedLimits limits(void)
{
        return (SchedLimits){ .default_memory_mb = 1280,
                              .default_vcpus = 2,
                              .default_region = "ams",
                              .org_max_memory_mb = 2048,
                              .org_max_lifetime_ms = 30 * 60 * 1000,
                              .region_known = known,
                              .known_regions = "ams, ord" };
}

Test(validate, defaults)
{
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        SchedLimits lim = limits();
        SchedCreateSpec s;
        char *msg = NULL;
        cr_assert_eq(sched_validate_create(&req, &lim, &s, &msg), 0, "%s", msg);
        cr_assert_str_eq(s.region, "ams");
        cr_assert_eq(s.memory_mb, 1280);
        cr_assert_eq(s.vcpus, 2);
        cr_assert_eq(s.lifetime_ms, 30 * 60 * 1000, "no lifetime means the org's maximum");
        cr_assert_not(s.session);
}

Test(validate, org_limits_and_regions)
{
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        SchedLimits lim = limits();
        SchedCreateSpec s;
        char *msg = NULL;

        req.memory_mb = 4096;
        cr_assert_eq(sched_validate_create(&req, &lim, &s, &msg), -EINVAL);
        cr_assert_str_eq(msg, "memory_mb: 4096 exceeds this organization's maximum of 2048 MiB");
        free(msg);
        req.memory_mb = 0;

        char *allowed[] = { (char *)"ord" };
        lim.org_allowed_regions = allowed;
        lim.n_org_allowed_regions = 1;
        req.region = (char *)"ams";
        cr_assert_eq(sched_validate_create(&req, &lim, &s, &msg), -SBX_E_PERMISSION_DENIED);
        cr_assert_str_eq(msg, "region: this organization may not use region \"ams\"");
        free(msg);
        req.region = (char *)"ord";
        cr_assert_eq(sched_validate_create(&req, &lim, &s, &msg), 0);

        req.session = true;
        cr_assert_eq(sched_validate_create(&req, &lim, &s, &msg), 0);
        cr_assert(s.session);
        cr_assert_eq(s.lifetime_ms, 0);
}

Test(validate, org_names)
{
        cr_assert(sched_org_name_valid("acme"));
        cr_assert(sched_org_name_valid("a-1"));
        cr_assert_not(sched_org_name_valid("Acme"));
        cr_assert_not(sched_org_name_valid("-acme"));
        cr_assert_not(sched_org_name_valid(""));
        cr_assert_not(sched_org_name_valid("a/b"));
}
