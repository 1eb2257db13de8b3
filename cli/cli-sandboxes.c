/* SPDX-License-Identifier: Apache-2.0 */
/* sbx create, get, list, delete, extend: the Sandboxes service, for an organization's token. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/api/api.h"
#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"

#define STATE_PREFIX "SANDBOX_STATE_"

enum {
        OPT_VCPUS = CLI_OPT_FIRST,
        OPT_LABEL,
        OPT_ALLOW_NET,
        OPT_NO_NET,
        OPT_SECRET,
        OPT_STATE,
        OPT_ALL,
        OPT_WAIT,
};

static const char *state_name(Sbx__V1__SandboxState s, char *buf, size_t n)
{
        return cli_enum_name(&sbx__v1__sandbox_state__descriptor, (int)s, STATE_PREFIX, buf, n);
}

static bool state_ended(Sbx__V1__SandboxState s)
{
        return s == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED ||
               s == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED ||
               s == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST;
}

/* ---- labels: "k=v" flags into map entries of either request ---- */

typedef struct Labels {
        char **keys;
        char **values;
        /* Built by labels_build(): entries of the request's LabelsEntry type, and pointers to them. */
        void *entries;
        void **ptrs;
} Labels;

static void labels_done(Labels *l)
{
        strv_free(l->keys);
        strv_free(l->values);
        free(l->entries);
        free(l->ptrs);
}

/* A later value for the same key replaces the earlier one, as in the map it becomes. */
static int labels_add(Labels *l, const char *arg)
{
        const char *eq = strchr(arg, '=');
        _cleanup_free_ char *key = NULL;
        size_t i = 0;
        int r;

        if (!eq || eq == arg)
                return -EINVAL;
        key = strndup(arg, (size_t)(eq - arg));
        if (!key)
                return -ENOMEM;
        STRV_FOREACH (k, l->keys) {
                if (streq(*k, key))
                        return free_and_strdup(&l->values[i], eq + 1);
                i++;
        }
        r = strv_extend(&l->keys, key);
        if (r < 0)
                return r;
        r = strv_extend(&l->values, eq + 1);
        if (r < 0) {
                /* Keep the two vectors the same length. */
                size_t n = strv_length(l->keys);
                free(l->keys[n - 1]);
                l->keys[n - 1] = NULL;
        }
        return r;
}

/* Both requests' LabelsEntry messages are {key, value}; build them from the descriptor so one
 * parser serves Create and List. */
static int labels_build(Labels *l, const ProtobufCMessageDescriptor *d, size_t *ret_n, void ***ret_ptrs)
{
        size_t n = strv_length(l->keys);

        if (n == 0) {
                *ret_n = 0;
                *ret_ptrs = NULL;
                return 0;
        }
        l->entries = calloc(n, d->sizeof_message);
        l->ptrs = calloc(n + 1, sizeof(void *));
        if (!l->entries || !l->ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char *e = (char *)l->entries + i * d->sizeof_message;
                d->message_init((ProtobufCMessage *)e);
                *(char **)(e + d->fields[0].offset) = l->keys[i];
                *(char **)(e + d->fields[1].offset) = l->values[i];
                l->ptrs[i] = e;
        }
        *ret_n = n;
        *ret_ptrs = l->ptrs;
        return 0;
}

/* ---- secrets: "NAME=value@host1,host2", or "NAME@hosts" to take the value from $NAME ---- */

typedef struct Secrets {
        Sbx__V1__SecretInput **items;
        size_t n;
} Secrets;

static void secret_free(Sbx__V1__SecretInput *s)
{
        if (!s)
                return;
        free(s->name);
        strv_free(s->hosts);
        if (s->value) {
                explicit_bzero(s->value, strlen(s->value));
                free(s->value);
        }
        free(s);
}

static void secrets_done(Secrets *s)
{
        for (size_t i = 0; i < s->n; i++)
                secret_free(s->items[i]);
        free(s->items);
}

static int secrets_add(Secrets *s, const char *arg, const char **ret_problem)
{
        /* Hosts never contain '@', values may: the last '@' separates them. */
        const char *at = strrchr(arg, '@'), *eq = strchr(arg, '=');
        _cleanup_strv_free_ char **hosts = NULL;
        _cleanup_free_ char *name = NULL;
        char *value = NULL;
        Sbx__V1__SecretInput *in, **items;
        int r;

        if (!at || (eq && eq > at)) {
                *ret_problem = "expected NAME=VALUE@HOST[,HOST...] or NAME@HOST[,HOST...]";
                return -EINVAL;
        }
        if ((eq ? eq : at) == arg) {
                *ret_problem = "the name is empty";
                return -EINVAL;
        }
        r = strv_split(at + 1, ',', &hosts);
        if (r < 0)
                return r;
        if (strv_length(hosts) == 0) {
                *ret_problem = "at least one host is needed after '@'";
                return -EINVAL;
        }
        name = strndup(arg, (size_t)((eq ? eq : at) - arg));
        if (!name)
                return -ENOMEM;
        if (eq) {
                value = strndup(eq + 1, (size_t)(at - eq - 1));
        } else {
                const char *v = getenv(name);
                if (!v) {
                        *ret_problem = "no '=VALUE' given and no environment variable of that name is set";
                        return -EINVAL;
                }
                value = strdup(v);
        }
        in = new0(Sbx__V1__SecretInput, 1);
        items = reallocarray(s->items, s->n + 1, sizeof(*items));
        if (items)
                s->items = items;
        if (!value || !in || !items) {
                free(value);
                free(in);
                return -ENOMEM;
        }
        sbx__v1__secret_input__init(in);
        in->name = TAKE_PTR(name);
        in->value = value;
        in->n_hosts = strv_length(hosts);
        in->hosts = TAKE_PTR(hosts);
        s->items[s->n++] = in;
        return 0;
}

/* ---- printing ---- */

static void print_spec(const Sbx__V1__SandboxSpec *spec)
{
        char d[SBX_DURATION_MAX];

        cli_field("memory", "%" PRIu32 " MiB", spec->memory_mb);
        cli_field("vcpus", "%" PRIu32, spec->vcpus);
        if (spec->session)
                cli_field("lifetime", "session (lives while attached)");
        else
                cli_field("lifetime", "%s",
                          sbx_format_duration(d, sizeof(d), spec->lifetime_ms * USEC_PER_MSEC));
        for (size_t i = 0; i < spec->n_labels; i++)
                cli_field(i == 0 ? "labels" : "", "%s=%s", spec->labels[i]->key, spec->labels[i]->value);
        if (!spec->allow_net)
                cli_field("allow net", "internet (no private ranges)");
        else if (spec->allow_net->n_entries == 0)
                cli_field("allow net", "none");
        for (size_t i = 0; spec->allow_net && i < spec->allow_net->n_entries; i++)
                cli_field(i == 0 ? "allow net" : "", "%s", spec->allow_net->entries[i]);
        for (size_t i = 0; i < spec->n_secrets; i++) {
                _cleanup_free_ char *hosts = NULL;
                if (cli_join(spec->secrets[i]->hosts, spec->secrets[i]->n_hosts, ",", &hosts) < 0)
                        hosts = NULL;
                cli_field(i == 0 ? "secrets" : "", "%s (for %s)", spec->secrets[i]->name, strempty(hosts));
        }
}

/* The short form answers create; the full form answers get. */
static void print_sandbox(const Sbx__V1__Sandbox *sb, bool full)
{
        char st[32], t[CLI_TIME_MAX];

        cli_field("id", "%s", sb->id);
        if (full)
                cli_field("org", "%s", sb->org);
        cli_field("region", "%s", sb->region);
        cli_field("node", "%s", sb->node);
        if (!isempty(sb->reason))
                cli_field("state", "%s (%s)", state_name(sb->state, st, sizeof(st)), sb->reason);
        else
                cli_field("state", "%s", state_name(sb->state, st, sizeof(st)));
        if (full && sb->spec)
                print_spec(sb->spec);
        if (full)
                cli_field("created", "%s", cli_format_when(t, sizeof(t), sb->created_at_ms));
        if (sb->ended_at_ms > 0)
                cli_field("ended", "%s", cli_format_when(t, sizeof(t), sb->ended_at_ms));
        else if (sb->stop_at_ms > 0)
                cli_field("stops", "%s", cli_format_when(t, sizeof(t), sb->stop_at_ms));
        else if (sb->spec && sb->spec->session)
                cli_field("stops", "when the session ends");
        cli_field("data address", "%s", sb->data_address);
        if (sb->boot_duration_ms > 0)
                cli_field("boot time", "%" PRIu64 " ms", sb->boot_duration_ms);
}

static int print_failure(int r)
{
        return r < 0 ? cli_error("cannot print the reply: %s", sbx_error_message(r)) : CLI_EXIT_OK;
}

/* ---- create ---- */

static int create_run(Cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "region", required_argument, NULL, 'r' },
                { "memory", required_argument, NULL, 'm' },
                { "lifetime", required_argument, NULL, 'l' },
                { "vcpus", required_argument, NULL, OPT_VCPUS },
                { "label", required_argument, NULL, OPT_LABEL },
                { "allow-net", required_argument, NULL, OPT_ALLOW_NET },
                { "no-net", no_argument, NULL, OPT_NO_NET },
                { "secret", required_argument, NULL, OPT_SECRET },
                { "quiet", no_argument, NULL, 'q' },
                { NULL, 0, NULL, 0 },
        };
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        Sbx__V1__AllowNet allow = SBX__V1__ALLOW_NET__INIT;
        _cleanup_(labels_done) Labels labels = { 0 };
        _cleanup_(secrets_done) Secrets secrets = { 0 };
        _cleanup_strv_free_ char **allow_net = NULL;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        _cleanup_free_ char *progress = NULL;
        const char *problem = NULL;
        bool quiet = false, no_net = false;
        int c, r;

        while ((c = cli_getopt(cli, argc, argv, "r:m:l:q", opts)) > 0) {
                switch (c) {
                case 'r':
                        req.region = optarg;
                        break;
                case 'm':
                        if (cli_parse_memory_mb(optarg, &req.memory_mb) < 0)
                                return cli_usage_error(
                                        cli, "--memory: '%s' is not a size (MiB like 2048, or 2GiB)",
                                        optarg);
                        break;
                case 'l':
                        if (streq(optarg, "session")) {
                                req.session = true;
                                req.lifetime_ms = 0;
                        } else if (cli_parse_duration_ms(optarg, &req.lifetime_ms) < 0) {
                                return cli_usage_error(cli,
                                                       "--lifetime: '%s' is not a positive duration (e.g. "
                                                       "10m) or 'session'",
                                                       optarg);
                        } else {
                                req.session = false;
                        }
                        break;
                case OPT_VCPUS:
                        if (sbx_parse_uint32(optarg, &req.vcpus) < 0 || req.vcpus == 0)
                                return cli_usage_error(cli, "--vcpus: '%s' is not a positive number",
                                                       optarg);
                        break;
                case OPT_LABEL:
                        r = labels_add(&labels, optarg);
                        if (r == -EINVAL)
                                return cli_usage_error(cli, "--label: '%s' is not KEY=VALUE", optarg);
                        if (r < 0)
                                return cli_error("%s", sbx_error_message(r));
                        break;
                case OPT_ALLOW_NET: {
                        _cleanup_strv_free_ char **parts = NULL;
                        if (strv_split(optarg, ',', &parts) < 0)
                                return cli_error("out of memory");
                        STRV_FOREACH (p, parts) {
                                if (strv_extend(&allow_net, *p) < 0)
                                        return cli_error("out of memory");
                        }
                        if (!parts || !*parts)
                                return cli_usage_error(
                                        cli, "--allow-net: empty entry; use --no-net for no egress");
                        break;
                }
                case OPT_NO_NET:
                        no_net = true;
                        break;
                case OPT_SECRET:
                        r = secrets_add(&secrets, optarg, &problem);
                        if (r == -EINVAL)
                                return cli_usage_error(cli, "--secret: %s", problem);
                        if (r < 0)
                                return cli_error("%s", sbx_error_message(r));
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
        if (no_net && allow_net)
                return cli_usage_error(cli, "--no-net and --allow-net exclude each other");
        if (quiet && cli->json)
                return cli_usage_error(cli, "--quiet and --json exclude each other");

        /* Absent allow_net means the open internet; present and empty means no egress at all. */
        if (no_net || allow_net) {
                allow.entries = allow_net;
                allow.n_entries = strv_length(allow_net);
                req.allow_net = &allow;
        }
        if (labels_build(&labels, &sbx__v1__create_sandbox_request__labels_entry__descriptor, &req.n_labels,
                         (void ***)&req.labels) < 0)
                return cli_error("out of memory");
        req.secrets = secrets.items;
        req.n_secrets = secrets.n;

        if (asprintf(&progress, "Creating sandbox%s%s", isempty(req.region) ? "" : " in ",
                     strempty(req.region)) < 0)
                return cli_error("out of memory");
        r = cli_call(cli, &sbx_api_sandboxes_create, &req.base,
                     &(CliCallOptions){ .timeout = CLI_TIMEOUT_CREATE, .progress = progress }, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        const Sbx__V1__Sandbox *sb = (const Sbx__V1__Sandbox *)resp;
        if (cli->json)
                return print_failure(cli_json_print_message(resp));
        if (quiet)
                printf("%s\n", sb->id);
        else
                print_sandbox(sb, false);
        return CLI_EXIT_OK;
}

/* ---- get ---- */

static int get_run(Cli *cli, int argc, char **argv)
{
        Sbx__V1__GetSandboxRequest req = SBX__V1__GET_SANDBOX_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        int r;

        if ((r = cli_no_flags(cli, argc, argv)) < 0)
                return cli_getopt_status(r);
        if ((r = cli_check_args(cli, argc, argv, 1, 1, "sandbox ID")) != 0)
                return r;
        req.id = argv[optind];
        r = cli_call(cli, &sbx_api_sandboxes_get, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        if (cli->json)
                return print_failure(cli_json_print_message(resp));
        print_sandbox((const Sbx__V1__Sandbox *)resp, true);
        return CLI_EXIT_OK;
}

/* ---- list ---- */

static int add_states(Cli *cli, const char *arg, Sbx__V1__SandboxState **states, size_t *n)
{
        _cleanup_strv_free_ char **parts = NULL;

        if (strv_split(arg, ',', &parts) < 0)
                return cli_error("out of memory");
        STRV_FOREACH (p, parts) {
                int v;
                if (cli_enum_parse(&sbx__v1__sandbox_state__descriptor, STATE_PREFIX, *p, &v) < 0)
                        return cli_usage_error(
                                cli,
                                "--state: '%s' is not a state (pending, starting, running, stopping, "
                                "stopped, failed, lost)",
                                *p);
                Sbx__V1__SandboxState *a = reallocarray(*states, *n + 1, sizeof(**states));
                if (!a)
                        return cli_error("out of memory");
                a[(*n)++] = (Sbx__V1__SandboxState)v;
                *states = a;
        }
        return CLI_EXIT_OK;
}

static void list_row(CliTable *t, const Sbx__V1__Sandbox *sb)
{
        _cleanup_free_ char *labels = NULL;
        char st[32], rel[CLI_TIME_MAX];

        for (size_t i = 0; sb->spec && i < sb->spec->n_labels; i++) {
                char *l = NULL;
                if (asprintf(&l, "%s%s%s=%s", strempty(labels), labels ? "," : "", sb->spec->labels[i]->key,
                             sb->spec->labels[i]->value) < 0)
                        break;
                free(labels);
                labels = l;
        }
        cli_table_cell(t, sb->id);
        cli_table_cell(t, sb->region);
        cli_table_cell(t, state_name(sb->state, st, sizeof(st)));
        cli_table_cell(t, sb->node);
        if (sb->spec)
                cli_table_cellf(t, "%" PRIu32 " MiB", sb->spec->memory_mb);
        else
                cli_table_cell(t, "");
        if (sb->ended_at_ms > 0)
                cli_table_cellf(t, "ended %s", cli_format_relative(rel, sizeof(rel), sb->ended_at_ms));
        else if (sb->stop_at_ms > 0)
                cli_table_cell(t, cli_format_relative(rel, sizeof(rel), sb->stop_at_ms));
        else
                cli_table_cell(t, sb->spec && sb->spec->session ? "session" : "");
        cli_table_cell(t, labels);
}

static int list_run(Cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "label", required_argument, NULL, OPT_LABEL },
                { "state", required_argument, NULL, OPT_STATE },
                { "region", required_argument, NULL, 'r' },
                { "all", no_argument, NULL, OPT_ALL },
                { "quiet", no_argument, NULL, 'q' },
                { NULL, 0, NULL, 0 },
        };
        Sbx__V1__ListSandboxesRequest req = SBX__V1__LIST_SANDBOXES_REQUEST__INIT;
        _cleanup_(labels_done) Labels labels = { 0 };
        _cleanup_free_ Sbx__V1__SandboxState *states = NULL;
        _cleanup_free_ ProtobufCMessage **pages = NULL;
        _cleanup_free_ ProtobufCMessage **items = NULL;
        _cleanup_(cli_table_freep) CliTable *t = NULL;
        size_t n_pages = 0, n_items = 0;
        bool all = false, quiet = false, more = false;
        int c, r;

        while ((c = cli_getopt(cli, argc, argv, "r:q", opts)) > 0) {
                switch (c) {
                case OPT_LABEL:
                        r = labels_add(&labels, optarg);
                        if (r == -EINVAL)
                                return cli_usage_error(cli, "--label: '%s' is not KEY=VALUE", optarg);
                        if (r < 0)
                                return cli_error("%s", sbx_error_message(r));
                        break;
                case OPT_STATE:
                        r = add_states(cli, optarg, &states, &req.n_states);
                        if (r != CLI_EXIT_OK)
                                return r;
                        break;
                case 'r':
                        req.region = optarg;
                        break;
                case OPT_ALL:
                        all = true;
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
        if (quiet && cli->json)
                return cli_usage_error(cli, "--quiet and --json exclude each other");
        req.states = states;
        if (labels_build(&labels, &sbx__v1__list_sandboxes_request__labels_entry__descriptor, &req.n_labels,
                         (void ***)&req.labels) < 0)
                return cli_error("out of memory");

        /* Pages stay alive until printed: the items point into them. */
        r = CLI_EXIT_OK;
        for (;;) {
                ProtobufCMessage *resp = NULL;
                r = cli_call(cli, &sbx_api_sandboxes_list, &req.base, NULL, &resp);
                if (r != CLI_EXIT_OK)
                        break;
                ProtobufCMessage **p = reallocarray(pages, n_pages + 1, sizeof(*pages));
                const Sbx__V1__ListSandboxesResponse *page = (const Sbx__V1__ListSandboxesResponse *)resp;
                ProtobufCMessage **it =
                        p ? reallocarray(items, n_items + page->n_sandboxes + 1, sizeof(*items)) : NULL;
                if (p)
                        pages = p;
                if (!it) {
                        protobuf_c_message_free_unpacked(resp, NULL);
                        r = cli_error("out of memory");
                        break;
                }
                items = it;
                pages[n_pages++] = resp;
                for (size_t i = 0; i < page->n_sandboxes; i++)
                        items[n_items++] = &page->sandboxes[i]->base;
                more = !isempty(page->next_page_token);
                if (!more || !all)
                        break;
                req.page_token = page->next_page_token;
        }

        if (r == CLI_EXIT_OK) {
                if (cli->json) {
                        r = print_failure(cli_json_print_messages(items, n_items));
                } else if (quiet) {
                        for (size_t i = 0; i < n_items; i++)
                                printf("%s\n", ((const Sbx__V1__Sandbox *)items[i])->id);
                } else if (cli_table_new(&t, "ID", "REGION", "STATE", "NODE", "MEMORY", "STOPS", "LABELS",
                                         NULL) < 0) {
                        r = cli_error("out of memory");
                } else {
                        for (size_t i = 0; i < n_items; i++)
                                list_row(t, (const Sbx__V1__Sandbox *)items[i]);
                        r = print_failure(cli_table_print(t));
                }
                if (r == CLI_EXIT_OK && more && !all)
                        fprintf(stderr, "sbx: more sandboxes than shown; use --all for every page\n");
        }
        for (size_t i = 0; i < n_pages; i++)
                protobuf_c_message_free_unpacked(pages[i], NULL);
        return r;
}

/* ---- delete ---- */

static int delete_run(Cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "wait", no_argument, NULL, OPT_WAIT },
                { NULL, 0, NULL, 0 },
        };
        Sbx__V1__DeleteSandboxRequest req = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        char st[32];
        int c, r;

        while ((c = cli_getopt(cli, argc, argv, "", opts)) > 0)
                if (c == OPT_WAIT)
                        req.wait = true;
        if (c < 0)
                return cli_getopt_status(c);
        if ((r = cli_check_args(cli, argc, argv, 1, 1, "sandbox ID")) != 0)
                return r;
        req.id = argv[optind];
        r = cli_call(cli, &sbx_api_sandboxes_delete, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        const Sbx__V1__Sandbox *sb = ((const Sbx__V1__DeleteSandboxResponse *)resp)->sandbox;
        if (cli->json)
                r = print_failure(cli_json_print_message(resp));
        else if (!sb)
                printf("Deleted %s.\n", req.id);
        else if (state_ended(sb->state))
                printf("Deleted %s (%s).\n", req.id, state_name(sb->state, st, sizeof(st)));
        else if (!req.wait)
                printf("Deleting %s (%s).\n", req.id, state_name(sb->state, st, sizeof(st)));
        /* The scheduler answers a wait with what it knows once the deadline nears. */
        if (req.wait && sb && !state_ended(sb->state)) {
                fprintf(stderr, "sbx: %s is still %s; the wait ended before the node reported it stopped\n",
                        req.id, state_name(sb->state, st, sizeof(st)));
                return CLI_EXIT_FAILURE;
        }
        return r;
}

/* ---- extend ---- */

static int extend_run(Cli *cli, int argc, char **argv)
{
        Sbx__V1__ExtendSandboxRequest req = SBX__V1__EXTEND_SANDBOX_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        char t[CLI_TIME_MAX], asked[CLI_TIME_MAX];
        uint64_t ms;
        int r;

        if ((r = cli_no_flags(cli, argc, argv)) < 0)
                return cli_getopt_status(r);
        if ((r = cli_check_args(cli, argc, argv, 2, 2, "sandbox ID and DURATION")) != 0)
                return r;
        if (cli_parse_duration_ms(argv[optind + 1], &ms) < 0)
                return cli_usage_error(cli, "'%s' is not a positive duration (e.g. 30m, 1h)",
                                       argv[optind + 1]);
        req.id = argv[optind];
        /* The new stop time counts from now, not from the old stop time. */
        req.stop_at_ms = cli_now_ms() + (int64_t)ms;
        r = cli_call(cli, &sbx_api_sandboxes_extend, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        const Sbx__V1__ExtendSandboxResponse *e = (const Sbx__V1__ExtendSandboxResponse *)resp;
        if (cli->json)
                return print_failure(cli_json_print_message(resp));
        printf("%s stops at %s.\n", req.id, cli_format_when(t, sizeof(t), e->stop_at_ms));
        if (e->stop_at_ms < req.stop_at_ms)
                printf("Capped by the organization's maximum lifetime (asked for %s).\n",
                       cli_format_time(asked, sizeof(asked), req.stop_at_ms));
        return CLI_EXIT_OK;
}

const CliCommand cli_sandbox_commands[] = {
        {
                .name = "create",
                .synopsis = "[--region R] [--memory SIZE] [--lifetime DURATION|session] [--vcpus N] "
                            "[--label K=V]... [--allow-net ENTRY]... [--no-net] [--secret SPEC]... [-q]",
                .summary = "Create a sandbox and wait until it runs",
                .help = "Flags:\n"
                        "  -r, --region R           region, e.g. ams (default: the scheduler's)\n"
                        "  -m, --memory SIZE        memory in MiB (2048) or with a unit (2GiB); default "
                        "1280\n"
                        "  -l, --lifetime DURATION  stop after DURATION (10m, 1h); 'session' binds the "
                        "sandbox to\n"
                        "                           an Attach stream; default: the organization's maximum\n"
                        "  --vcpus N                virtual CPUs (default 2)\n"
                        "  --label K=V              a label; repeatable (at most 5)\n"
                        "  --allow-net ENTRY        allow egress to host, *.domain, IP, [IPv6], each with "
                        "an\n"
                        "                           optional :port; repeatable or comma-separated\n"
                        "  --no-net                 no egress at all (without either flag: the internet, "
                        "but\n"
                        "                           no private ranges)\n"
                        "  --secret NAME=VALUE@HOST[,HOST...]\n"
                        "                           the guest sees a placeholder in $NAME; the egress "
                        "proxy\n"
                        "                           substitutes VALUE toward HOSTs only. NAME@HOST... "
                        "takes\n"
                        "                           VALUE from this environment's $NAME (keeps it out of "
                        "ps)\n"
                        "  -q, --quiet              print only the id: id=$(sbx create -q)\n"
                        "\nWhile it waits, a progress line is shown on stderr when stderr is a terminal.\n"
                        "--json prints the whole sandbox, including its access_token for the data plane.\n",
                .run = create_run,
        },
        {
                .name = "get",
                .synopsis = "ID",
                .summary = "Show a sandbox",
                .run = get_run,
        },
        {
                .name = "list",
                .synopsis = "[--label K=V]... [--state STATE]... [--region R] [--all] [-q]",
                .summary = "List the organization's sandboxes",
                .help = "Flags:\n"
                        "  --label K=V      only sandboxes with this label; repeatable (all must match)\n"
                        "  --state STATE    only these states: pending, starting, running, stopping, "
                        "stopped,\n"
                        "                   failed, lost; repeatable or comma-separated\n"
                        "  -r, --region R   only this region\n"
                        "  --all            fetch every page (default: the first 100 sandboxes)\n"
                        "  -q, --quiet      print only the ids\n",
                .run = list_run,
        },
        {
                .name = "delete",
                .synopsis = "ID [--wait]",
                .summary = "Stop and delete a sandbox",
                .help = "Flags:\n"
                        "  --wait   wait until the node reports the sandbox stopped (within --timeout);\n"
                        "           exit 1 if it did not stop in time\n"
                        "\nDeleting a sandbox that already ended succeeds.\n",
                .run = delete_run,
        },
        {
                .name = "extend",
                .synopsis = "ID DURATION",
                .summary = "Move a sandbox's stop time to now + DURATION",
                .help = "The scheduler caps the stop time at creation + the organization's maximum "
                        "lifetime;\n"
                        "the granted time is printed, with a note when it was capped. Session sandboxes\n"
                        "cannot be extended.\n",
                .run = extend_run,
        },
};
const size_t cli_sandbox_n_commands = ELEMENTSOF(cli_sandbox_commands);
