/* SPDX-License-Identifier: Apache-2.0 */
/* sbx admin org/token/node and sbx nodes: the Admin service, for an admin token. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/api/api.h"
#include "common/base/parse.h"
#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"

/* Token ids are "tok_" + 12 hex characters of the token's hash; tokens themselves never start so. */
#define TOKEN_ID_PREFIX "tok_"

enum {
        OPT_QUOTA = CLI_OPT_FIRST,
        OPT_MAX_MEMORY,
        OPT_MAX_LIFETIME,
        OPT_REGIONS,
        OPT_ALL_REGIONS,
        OPT_ORG,
        OPT_DESCRIPTION,
        OPT_ADMIN,
        OPT_REGION,
};

static int print_failure(int r)
{
        return r < 0 ? cli_error("cannot print the reply: %s", sbx_error_message(r)) : CLI_EXIT_OK;
}

/* ---- organizations ---- */

typedef struct OrgLimits {
        uint32_t max_sandboxes;
        uint32_t max_memory_mb;
        uint64_t max_lifetime_ms;
        char **regions;
        bool all_regions;
        bool any;
} OrgLimits;

static void org_limits_done(OrgLimits *l)
{
        strv_free(l->regions);
}

/* Handles the flags org create and org update share; returns CLI_EXIT_OK, or a usage error. */
static int org_limit_flag(Cli *cli, int c, OrgLimits *l)
{
        switch (c) {
        case OPT_QUOTA:
                if (sbx_parse_uint32(optarg, &l->max_sandboxes) < 0 || l->max_sandboxes == 0)
                        return cli_usage_error(cli, "--quota: '%s' is not a positive number", optarg);
                break;
        case OPT_MAX_MEMORY:
                if (cli_parse_memory_mb(optarg, &l->max_memory_mb) < 0)
                        return cli_usage_error(
                                cli, "--max-memory: '%s' is not a size (MiB like 4096, or 4GiB)", optarg);
                break;
        case OPT_MAX_LIFETIME:
                if (cli_parse_duration_ms(optarg, &l->max_lifetime_ms) < 0)
                        return cli_usage_error(
                                cli, "--max-lifetime: '%s' is not a positive duration (e.g. 30m, 2h)",
                                optarg);
                break;
        case OPT_REGIONS:
                l->regions = strv_free(l->regions);
                if (strv_split(optarg, ',', &l->regions) < 0)
                        return cli_error("out of memory");
                STRV_FOREACH (r, l->regions) {
                        if (!sbx_region_valid(*r))
                                return cli_usage_error(
                                        cli, "--regions: '%s' is not a region (three lowercase letters)",
                                        *r);
                }
                if (!l->regions || !*l->regions)
                        return cli_usage_error(cli,
                                               "--regions: no region given; use --all-regions to allow all");
                break;
        case OPT_ALL_REGIONS:
                l->all_regions = true;
                break;
        }
        l->any = true;
        return CLI_EXIT_OK;
}

static void print_org(const Sbx__V1__Org *o)
{
        _cleanup_free_ char *regions = NULL;
        char d[SBX_DURATION_MAX], t[CLI_TIME_MAX];

        if (cli_join(o->allowed_regions, o->n_allowed_regions, ",", &regions) < 0)
                regions = NULL;
        cli_field("name", "%s", o->name);
        cli_field("max sandboxes", "%" PRIu32, o->max_sandboxes);
        cli_field("max memory", "%" PRIu32 " MiB", o->max_memory_mb);
        cli_field("max lifetime", "%s",
                  sbx_format_duration(d, sizeof(d), o->max_lifetime_ms * USEC_PER_MSEC));
        cli_field("regions", "%s", o->n_allowed_regions > 0 && regions ? regions : "all");
        cli_field("created", "%s", cli_format_when(t, sizeof(t), o->created_at_ms));
}

static int print_org_reply(Cli *cli, ProtobufCMessage *resp)
{
        if (cli->json)
                return print_failure(cli_json_print_message(resp));
        print_org((const Sbx__V1__Org *)resp);
        return CLI_EXIT_OK;
}

static const struct option org_limit_opts[] = {
        { "quota", required_argument, NULL, OPT_QUOTA },
        { "max-memory", required_argument, NULL, OPT_MAX_MEMORY },
        { "max-lifetime", required_argument, NULL, OPT_MAX_LIFETIME },
        { "regions", required_argument, NULL, OPT_REGIONS },
        { "all-regions", no_argument, NULL, OPT_ALL_REGIONS },
        { NULL, 0, NULL, 0 },
};

static int org_create_run(Cli *cli, int argc, char **argv)
{
        Sbx__V1__CreateOrgRequest req = SBX__V1__CREATE_ORG_REQUEST__INIT;
        _cleanup_(org_limits_done) OrgLimits l = { 0 };
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        int c, r;

        while ((c = cli_getopt(cli, argc, argv, "", org_limit_opts)) > 0)
                if ((r = org_limit_flag(cli, c, &l)) != CLI_EXIT_OK)
                        return r;
        if (c < 0)
                return cli_getopt_status(c);
        if ((r = cli_check_args(cli, argc, argv, 1, 1, "organization NAME")) != 0)
                return r;
        if (l.regions && l.all_regions)
                return cli_usage_error(cli, "--regions and --all-regions exclude each other");
        req.name = argv[optind];
        req.max_sandboxes = l.max_sandboxes;
        req.max_memory_mb = l.max_memory_mb;
        req.max_lifetime_ms = l.max_lifetime_ms;
        req.allowed_regions = l.regions;
        req.n_allowed_regions = strv_length(l.regions);
        r = cli_call(cli, &sbx_api_admin_create_org, &req.base, NULL, &resp);
        return r == CLI_EXIT_OK ? print_org_reply(cli, resp) : r;
}

static int org_update(Cli *cli, const char *name, const OrgLimits *l)
{
        Sbx__V1__UpdateOrgRequest req = SBX__V1__UPDATE_ORG_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        int r;

        req.name = (char *)name;
        req.max_sandboxes = l->max_sandboxes;
        req.max_memory_mb = l->max_memory_mb;
        req.max_lifetime_ms = l->max_lifetime_ms;
        req.allowed_regions = l->regions;
        req.n_allowed_regions = strv_length(l->regions);
        req.clear_allowed_regions = l->all_regions;
        r = cli_call(cli, &sbx_api_admin_update_org, &req.base, NULL, &resp);
        return r == CLI_EXIT_OK ? print_org_reply(cli, resp) : r;
}

static int org_update_run(Cli *cli, int argc, char **argv)
{
        _cleanup_(org_limits_done) OrgLimits l = { 0 };
        int c, r;

        while ((c = cli_getopt(cli, argc, argv, "", org_limit_opts)) > 0)
                if ((r = org_limit_flag(cli, c, &l)) != CLI_EXIT_OK)
                        return r;
        if (c < 0)
                return cli_getopt_status(c);
        if ((r = cli_check_args(cli, argc, argv, 1, 1, "organization NAME")) != 0)
                return r;
        if (!l.any)
                return cli_usage_error(cli, "nothing to change; give at least one flag");
        if (l.regions && l.all_regions)
                return cli_usage_error(cli, "--regions and --all-regions exclude each other");
        return org_update(cli, argv[optind], &l);
}

static int org_quota_run(Cli *cli, int argc, char **argv)
{
        OrgLimits l = { 0 };
        int r;

        if ((r = cli_no_flags(cli, argc, argv)) < 0)
                return cli_getopt_status(r);
        if ((r = cli_check_args(cli, argc, argv, 2, 2, "organization NAME and quota N")) != 0)
                return r;
        /* 0 would mean "unchanged" to UpdateOrg: refuse it rather than do nothing. */
        if (sbx_parse_uint32(argv[optind + 1], &l.max_sandboxes) < 0 || l.max_sandboxes == 0)
                return cli_usage_error(cli, "'%s' is not a positive number of sandboxes", argv[optind + 1]);
        return org_update(cli, argv[optind], &l);
}

static int org_cmp(const void *a, const void *b)
{
        const Sbx__V1__OrgWithUsage *x = *(Sbx__V1__OrgWithUsage *const *)a,
                                    *y = *(Sbx__V1__OrgWithUsage *const *)b;
        return strcmp(x->org ? x->org->name : "", y->org ? y->org->name : "");
}

static int org_list_run(Cli *cli, int argc, char **argv)
{
        Sbx__V1__ListOrgsRequest req = SBX__V1__LIST_ORGS_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        _cleanup_(cli_table_freep) CliTable *t = NULL;
        int r;

        if ((r = cli_no_flags(cli, argc, argv)) < 0)
                return cli_getopt_status(r);
        if ((r = cli_check_args(cli, argc, argv, 0, 0, "")) != 0)
                return r;
        r = cli_call(cli, &sbx_api_admin_list_orgs, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        Sbx__V1__ListOrgsResponse *l = (Sbx__V1__ListOrgsResponse *)resp;
        /* The scheduler answers in no particular order. */
        qsort_safe(l->orgs, l->n_orgs, sizeof(*l->orgs), org_cmp);
        if (cli->json)
                return print_failure(cli_json_print_messages((ProtobufCMessage **)l->orgs, l->n_orgs));
        if (cli_table_new(&t, "NAME", "SANDBOXES", "MEMORY USED", "MAX MEMORY/SANDBOX", "MAX LIFETIME",
                          "REGIONS", "CREATED", NULL) < 0)
                return cli_error("out of memory");
        for (size_t i = 0; i < l->n_orgs; i++) {
                const Sbx__V1__Org *o = l->orgs[i]->org;
                const Sbx__V1__OrgUsage *u = l->orgs[i]->usage;
                _cleanup_free_ char *regions = NULL;
                char d[SBX_DURATION_MAX], rel[CLI_TIME_MAX];
                if (!o)
                        continue;
                if (cli_join(o->allowed_regions, o->n_allowed_regions, ",", &regions) < 0)
                        regions = NULL;
                cli_table_cell(t, o->name);
                cli_table_cellf(t, "%" PRIu32 "/%" PRIu32, u ? u->sandboxes : 0, o->max_sandboxes);
                cli_table_cellf(t, "%" PRIu64 " MiB", u ? u->memory_mb : 0);
                cli_table_cellf(t, "%" PRIu32 " MiB", o->max_memory_mb);
                cli_table_cell(t, sbx_format_duration(d, sizeof(d), o->max_lifetime_ms * USEC_PER_MSEC));
                cli_table_cell(t, o->n_allowed_regions > 0 && regions ? regions : "all");
                cli_table_cell(t, cli_format_relative(rel, sizeof(rel), o->created_at_ms));
        }
        return print_failure(cli_table_print(t));
}

/* ---- tokens ---- */

static const char *role_name(Sbx__V1__Role role, char *buf, size_t n)
{
        return cli_enum_name(&sbx__v1__role__descriptor, (int)role, "ROLE_", buf, n);
}

static int token_create_run(Cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "org", required_argument, NULL, OPT_ORG },
                { "admin", no_argument, NULL, OPT_ADMIN },
                { "description", required_argument, NULL, OPT_DESCRIPTION },
                { "quiet", no_argument, NULL, 'q' },
                { NULL, 0, NULL, 0 },
        };
        Sbx__V1__CreateTokenRequest req = SBX__V1__CREATE_TOKEN_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        bool admin = false, quiet = false;
        char role[16];
        int c, r;

        while ((c = cli_getopt(cli, argc, argv, "q", opts)) > 0) {
                switch (c) {
                case OPT_ORG:
                        req.org = optarg;
                        break;
                case OPT_ADMIN:
                        admin = true;
                        break;
                case OPT_DESCRIPTION:
                        req.description = optarg;
                        break;
                case 'q':
                        quiet = true;
                        break;
                }
        }
        if (c < 0)
                return cli_getopt_status(c);
        if ((r = cli_check_args(cli, argc, argv, 0, 0, "")) != 0)
                return r;
        if (admin == !isempty(req.org))
                return cli_usage_error(cli,
                                       "give either --org NAME (a user token) or --admin (an admin token)");
        if (quiet && cli->json)
                return cli_usage_error(cli, "--quiet and --json exclude each other");
        req.role = admin ? SBX__V1__ROLE__ROLE_ADMIN : SBX__V1__ROLE__ROLE_USER;
        r = cli_call(cli, &sbx_api_admin_create_token, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        const Sbx__V1__CreateTokenResponse *tr = (const Sbx__V1__CreateTokenResponse *)resp;
        if (cli->json)
                return print_failure(cli_json_print_message(resp));
        if (quiet) {
                printf("%s\n", tr->token);
                return CLI_EXIT_OK;
        }
        /* The token alone on its line, so that it copies cleanly; it is never shown again. */
        printf("New %s token (shown only now; store it safely):\n\n    %s\n\n", admin ? "admin" : "user",
               tr->token);
        if (tr->record) {
                cli_field("token id", "%s", tr->record->token_id);
                cli_field("role", "%s", role_name(tr->record->role, role, sizeof(role)));
                if (!admin)
                        cli_field("org", "%s", tr->record->org);
                if (!isempty(tr->record->description))
                        cli_field("description", "%s", tr->record->description);
        }
        return CLI_EXIT_OK;
}

static int token_revoke_run(Cli *cli, int argc, char **argv)
{
        Sbx__V1__RevokeTokenRequest req = SBX__V1__REVOKE_TOKEN_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        const char *arg;
        int r;

        if ((r = cli_no_flags(cli, argc, argv)) < 0)
                return cli_getopt_status(r);
        if ((r = cli_check_args(cli, argc, argv, 1, 1, "TOKEN or token id (tok_…)")) != 0)
                return r;
        arg = argv[optind];
        if (startswith(arg, TOKEN_ID_PREFIX))
                req.token_id = (char *)arg;
        else
                req.token = (char *)arg;
        r = cli_call(cli, &sbx_api_admin_revoke_token, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        if (cli->json)
                return print_failure(cli_json_print_message(resp));
        if (req.token_id != protobuf_c_empty_string)
                printf("Revoked token %s.\n", req.token_id);
        else
                printf("Revoked the token.\n");
        return CLI_EXIT_OK;
}

static int token_cmp(const void *a, const void *b)
{
        const Sbx__V1__TokenRecord *x = *(Sbx__V1__TokenRecord *const *)a,
                                   *y = *(Sbx__V1__TokenRecord *const *)b;
        int r = strcmp(x->org, y->org);
        if (r != 0)
                return r;
        if (x->created_at_ms != y->created_at_ms)
                return x->created_at_ms < y->created_at_ms ? -1 : 1;
        return strcmp(x->token_id, y->token_id);
}

static int token_list_run(Cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "org", required_argument, NULL, OPT_ORG },
                { NULL, 0, NULL, 0 },
        };
        Sbx__V1__ListTokensRequest req = SBX__V1__LIST_TOKENS_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        _cleanup_(cli_table_freep) CliTable *t = NULL;
        int c, r;

        while ((c = cli_getopt(cli, argc, argv, "", opts)) > 0)
                if (c == OPT_ORG)
                        req.org = optarg;
        if (c < 0)
                return cli_getopt_status(c);
        if ((r = cli_check_args(cli, argc, argv, 0, 0, "")) != 0)
                return r;
        r = cli_call(cli, &sbx_api_admin_list_tokens, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        Sbx__V1__ListTokensResponse *l = (Sbx__V1__ListTokensResponse *)resp;
        qsort_safe(l->tokens, l->n_tokens, sizeof(*l->tokens), token_cmp);
        if (cli->json)
                return print_failure(cli_json_print_messages((ProtobufCMessage **)l->tokens, l->n_tokens));
        if (cli_table_new(&t, "TOKEN ID", "ROLE", "ORG", "CREATED", "DESCRIPTION", NULL) < 0)
                return cli_error("out of memory");
        for (size_t i = 0; i < l->n_tokens; i++) {
                const Sbx__V1__TokenRecord *tok = l->tokens[i];
                char role[16], t1[CLI_TIME_MAX];
                cli_table_cell(t, tok->token_id);
                cli_table_cell(t, role_name(tok->role, role, sizeof(role)));
                cli_table_cell(t, tok->org);
                cli_table_cell(t, cli_format_time(t1, sizeof(t1), tok->created_at_ms));
                cli_table_cell(t, tok->description);
        }
        return print_failure(cli_table_print(t));
}

/* ---- nodes ---- */

static const char *node_state(const Sbx__V1__NodeInfo *n)
{
        if (n->control && n->control->draining)
                return "draining";
        if (n->control && n->control->cordoned)
                return "cordoned";
        return "ready";
}

static int node_cmp(const void *a, const void *b)
{
        const Sbx__V1__NodeInfo *x = *(Sbx__V1__NodeInfo *const *)a, *y = *(Sbx__V1__NodeInfo *const *)b;
        return strcmp(x->node ? x->node->name : "", y->node ? y->node->name : "");
}

static int nodes_run(Cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "region", required_argument, NULL, 'r' },
                { NULL, 0, NULL, 0 },
        };
        Sbx__V1__ListNodesRequest req = SBX__V1__LIST_NODES_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        _cleanup_(cli_table_freep) CliTable *t = NULL;
        int c, r;

        while ((c = cli_getopt(cli, argc, argv, "r:", opts)) > 0)
                if (c == 'r')
                        req.region = optarg;
        if (c < 0)
                return cli_getopt_status(c);
        if ((r = cli_check_args(cli, argc, argv, 0, 0, "")) != 0)
                return r;
        r = cli_call(cli, &sbx_api_admin_list_nodes, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        Sbx__V1__ListNodesResponse *l = (Sbx__V1__ListNodesResponse *)resp;
        qsort_safe(l->nodes, l->n_nodes, sizeof(*l->nodes), node_cmp);
        if (cli->json)
                return print_failure(cli_json_print_messages((ProtobufCMessage **)l->nodes, l->n_nodes));
        if (cli_table_new(&t, "NAME", "REGION", "STATE", "SANDBOXES", "MEMORY", "SLOTS", "ACCEL",
                          "DATA ADDRESS", NULL) < 0)
                return cli_error("out of memory");
        for (size_t i = 0; i < l->n_nodes; i++) {
                const Sbx__V1__NodeInfo *n = l->nodes[i];
                const Sbx__V1__Resources *cap = n->node ? n->node->capacity : NULL;
                const Sbx__V1__Resources *used = n->usage ? n->usage->allocated : NULL;
                if (!n->node)
                        continue;
                cli_table_cell(t, n->node->name);
                cli_table_cell(t, n->node->region);
                cli_table_cell(t, node_state(n));
                cli_table_cellf(t, "%" PRIu32, n->sandboxes);
                cli_table_cellf(t, "%" PRIu64 "/%" PRIu64 " MiB", used ? used->memory_mb : 0,
                                cap ? cap->memory_mb : 0);
                cli_table_cellf(t, "%" PRIu32 "/%" PRIu32, used ? used->slots : 0, cap ? cap->slots : 0);
                cli_table_cell(t, n->node->accelerator);
                cli_table_cell(t, n->node->data_address);
        }
        return print_failure(cli_table_print(t));
}

static int node_cordon(Cli *cli, int argc, char **argv, bool cordon)
{
        Sbx__V1__CordonNodeRequest req = SBX__V1__CORDON_NODE_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        int r;

        if ((r = cli_no_flags(cli, argc, argv)) < 0)
                return cli_getopt_status(r);
        if ((r = cli_check_args(cli, argc, argv, 1, 1, "node NAME")) != 0)
                return r;
        req.name = argv[optind];
        req.cordon = cordon;
        r = cli_call(cli, &sbx_api_admin_cordon_node, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        if (cli->json)
                return print_failure(cli_json_print_message(resp));
        if (cordon)
                printf("Node %s cordoned: it gets no new sandboxes; those running keep running.\n",
                       req.name);
        else
                printf("Node %s uncordoned: it takes new sandboxes again.\n", req.name);
        return CLI_EXIT_OK;
}

static int node_cordon_run(Cli *cli, int argc, char **argv)
{
        return node_cordon(cli, argc, argv, true);
}

static int node_uncordon_run(Cli *cli, int argc, char **argv)
{
        return node_cordon(cli, argc, argv, false);
}

static int node_drain_run(Cli *cli, int argc, char **argv)
{
        Sbx__V1__DrainNodeRequest req = SBX__V1__DRAIN_NODE_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        int r;

        if ((r = cli_no_flags(cli, argc, argv)) < 0)
                return cli_getopt_status(r);
        if ((r = cli_check_args(cli, argc, argv, 1, 1, "node NAME")) != 0)
                return r;
        req.name = argv[optind];
        r = cli_call(cli, &sbx_api_admin_drain_node, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        if (cli->json)
                return print_failure(cli_json_print_message(resp));
        uint32_t n = ((const Sbx__V1__DrainNodeResponse *)resp)->stopping;
        printf("Node %s draining: cordoned, %" PRIu32 " sandbox%s asked to stop.\n", req.name, n,
               n == 1 ? "" : "es");
        return CLI_EXIT_OK;
}

#define ORG_LIMIT_HELP                                                                    \
        "  --quota N                 concurrent sandboxes (default 5)\n"                  \
        "  --max-memory SIZE         largest sandbox, MiB (4096) or with a unit (4GiB)\n" \
        "  --max-lifetime DURATION   longest lifetime, e.g. 30m (default 30m)\n"          \
        "  --regions R[,R...]        regions the organization may use (default: all)\n"

const CliCommand cli_admin_commands[] = {
        {
                .name = "admin org create",
                .synopsis = "NAME [--quota N] [--max-memory SIZE] [--max-lifetime DURATION] [--regions R,R]",
                .summary = "Create an organization",
                .help = "Flags:\n" ORG_LIMIT_HELP "\nNAME: [a-z0-9-], 1..63 bytes.\n",
                .admin = true,
                .run = org_create_run,
        },
        {
                .name = "admin org list",
                .synopsis = "",
                .summary = "List organizations with their usage",
                .admin = true,
                .run = org_list_run,
        },
        {
                .name = "admin org quota",
                .synopsis = "NAME N",
                .summary = "Set how many sandboxes an organization may run at once",
                .admin = true,
                .run = org_quota_run,
        },
        {
                .name = "admin org update",
                .synopsis =
                        "NAME [--quota N] [--max-memory SIZE] [--max-lifetime DURATION] [--regions R,R | "
                        "--all-regions]",
                .summary = "Change an organization's limits",
                .help = "Flags (those not given stay unchanged):\n" ORG_LIMIT_HELP
                        "  --all-regions             allow every region again\n"
                        "\nLowered limits apply to new sandboxes; running ones keep going.\n",
                .admin = true,
                .run = org_update_run,
        },
        {
                .name = "admin token create",
                .synopsis = "--org NAME [--description TEXT] | --admin [--description TEXT] [-q]",
                .summary = "Create an API token",
                .help = "Flags:\n"
                        "  --org NAME           a user token acting for organization NAME\n"
                        "  --admin              an admin token (Admin API only)\n"
                        "  --description TEXT   a note for listings (\"ci\", \"alice's laptop\")\n"
                        "  -q, --quiet          print only the token: export SBX_TOKEN=$(sbx admin token "
                        "create "
                        "--org demo -q)\n"
                        "\nThe token is shown once; the scheduler stores only its hash.\n",
                .admin = true,
                .run = token_create_run,
        },
        {
                .name = "admin token revoke",
                .synopsis = "TOKEN|TOKEN_ID",
                .summary = "Revoke a token, by value or by id (tok_…)",
                .admin = true,
                .run = token_revoke_run,
        },
        {
                .name = "admin token list",
                .synopsis = "[--org NAME]",
                .summary = "List tokens (ids and notes, never the tokens)",
                .admin = true,
                .run = token_list_run,
        },
        {
                .name = "admin node list",
                .synopsis = "[--region R]",
                .summary = "List nodes (same as sbx nodes)",
                .admin = true,
                .run = nodes_run,
        },
        {
                .name = "admin node cordon",
                .synopsis = "NAME",
                .summary = "Stop placing sandboxes on a node",
                .admin = true,
                .run = node_cordon_run,
        },
        {
                .name = "admin node uncordon",
                .synopsis = "NAME",
                .summary = "Place sandboxes on a node again",
                .admin = true,
                .run = node_uncordon_run,
        },
        {
                .name = "admin node drain",
                .synopsis = "NAME",
                .summary = "Cordon a node and stop its sandboxes",
                .admin = true,
                .run = node_drain_run,
        },
        {
                .name = "nodes",
                .synopsis = "[--region R]",
                .summary = "List nodes: state, sandboxes, memory and slots in use",
                .help = "Flags:\n"
                        "  -r, --region R   only this region\n"
                        "\nSTATE is ready, cordoned (no new sandboxes) or draining (sandboxes being "
                        "stopped).\n"
                        "MEMORY and SLOTS are allocated/total. Needs an admin token.\n",
                .admin = true,
                .run = nodes_run,
        },
};
const size_t cli_admin_n_commands = ELEMENTSOF(cli_admin_commands);
