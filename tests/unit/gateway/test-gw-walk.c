/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/gw-walk: walk() and expandGlob() computed from a pre-order listing of a tree. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "gateway/gw-walk.h"

#define T_DIR  SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY
#define T_FILE SBX__V1__FILE_TYPE__FILE_TYPE_REGULAR
#define T_LINK SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK

typedef struct Entry {
        const char *rel;
        Sbx__V1__FileType type;
        uint32_t depth;
} Entry;

/* What the agent lists under /w, depth first, a directory before what it holds. */
static const Entry tree[] = {
        { "", T_DIR, 0 },
        { "README.md", T_FILE, 1 },
        { "src", T_DIR, 1 },
        { "src/main.ts", T_FILE, 2 },
        { "src/lib", T_DIR, 2 },
        { "src/lib/a.ts", T_FILE, 3 },
        { "node_modules", T_DIR, 1 },
        { "node_modules/x", T_DIR, 2 },
        { "node_modules/x/i.ts", T_FILE, 3 },
        { "link", T_LINK, 1 },
};

/* The paths a walker produces for params (JSON), joined by ' '. */
static char *walk(const char *params_json)
{
        json_t *params = json_loads(params_json, 0, NULL), *out = json_array(), *e;
        GwWalker *w = NULL;
        char *why = NULL, *res = NULL;
        size_t len = 0, i;
        FILE *f = open_memstream(&res, &len);

        cr_assert_eq(gw_walker_new(params, &w, &why), 0, "%s", why);
        for (i = 0; i < ELEMENTSOF(tree); i++)
                if (gw_walker_feed(w, tree[i].rel, tree[i].type, tree[i].depth, out) == 1)
                        break;
        json_array_foreach(out, i, e)
                fprintf(f, "%s%s", i ? " " : "", json_string_value(json_object_get(e, "path")));
        fclose(f);
        gw_walker_free(w);
        json_decref(out);
        json_decref(params);
        return res;
}

Test(gw_walk, everything_in_order)
{
        char *s = walk("{\"path\":\"/w\"}");
        cr_assert_str_eq(s,
                         "/w /w/README.md /w/src /w/src/main.ts /w/src/lib /w/src/lib/a.ts /w/node_modules "
                         "/w/node_modules/x /w/node_modules/x/i.ts /w/link");
        free(s);
}

Test(gw_walk, options)
{
        char *s = walk("{\"path\":\"/w/\",\"maxDepth\":1}");
        cr_assert_str_eq(s, "/w/ /w/README.md /w/src /w/node_modules /w/link");
        free(s);
        s = walk("{\"path\":\"/"
                 "w\",\"includeDirs\":false,\"exts\":[\"ts\"],\"skip\":[{\"source\":\"node_modules\","
                 "\"flags\":\"\"}]}");
        cr_assert_str_eq(s, "/w/src/main.ts /w/src/lib/a.ts");
        free(s);
        s = walk("{\"path\":\"/w\",\"includeFiles\":false,\"includeSymlinks\":false}");
        cr_assert_str_eq(s, "/w /w/src /w/src/lib /w/node_modules /w/node_modules/x");
        free(s);
        s = walk("{\"path\":\"/w\",\"match\":[{\"source\":\"\\\\.MD$\",\"flags\":\"i\"}]}");
        cr_assert_str_eq(s, "/w/README.md");
        free(s);
        s = walk("{\"path\":\"/w\",\"maxDepth\":0}");
        cr_assert_str_eq(s, "/w");
        free(s);
        s = walk("{\"path\":\"/w\",\"maxDepth\":-1}");
        cr_assert_str_eq(s, "");
        free(s);
}

Test(gw_walk, agent_depth_and_bad_options)
{
        json_t *p = json_loads("{\"path\":\"/w\",\"maxDepth\":1}", 0, NULL);
        GwWalker *w;
        char *why = NULL;

        cr_assert_eq(gw_walker_new(p, &w, &why), 0);
        cr_assert_eq(gw_walker_agent_depth(w), 2);
        gw_walker_free(w);
        json_decref(p);
        p = json_loads("{\"path\":\"/w\",\"match\":[{\"source\":\"(\",\"flags\":\"\"}]}", 0, NULL);
        cr_assert_eq(gw_walker_new(p, &w, &why), -EINVAL);
        cr_assert(strstr(why, "match[0]"));
        free(why);
        json_decref(p);
}

static char *glob(const char *params_json, const char *cwd)
{
        json_t *params = json_loads(params_json, 0, NULL), *out = json_array(), *e;
        GwGlobber *g = NULL;
        char *why = NULL, *res = NULL;
        size_t len = 0, i;
        FILE *f = open_memstream(&res, &len);

        cr_assert_eq(gw_globber_new(params, cwd, &g, &why), 0, "%s", why);
        for (i = 0; i < ELEMENTSOF(tree); i++)
                cr_assert_geq(gw_globber_feed(g, tree[i].rel, tree[i].type, tree[i].depth), 0);
        cr_assert_eq(gw_globber_finish(g, out), 0);
        json_array_foreach(out, i, e)
                fprintf(f, "%s%s", i ? " " : "", json_string_value(json_object_get(e, "path")));
        fclose(f);
        gw_globber_free(g);
        json_decref(out);
        json_decref(params);
        return res;
}

Test(gw_walk, expand_glob)
{
        char *s = glob("{\"glob\":\"/w/**/*.ts\"}", "/");
        cr_assert_str_eq(s, "/w/node_modules/x/i.ts /w/src/lib/a.ts /w/src/main.ts");
        free(s);
        s = glob("{\"glob\":\"**/*.ts\",\"root\":\"/w\",\"exclude\":[\"node_modules\"]}", "/");
        cr_assert_str_eq(s, "/w/src/lib/a.ts /w/src/main.ts");
        free(s);
        s = glob("{\"glob\":\"*/\"}", "/w");
        cr_assert_str_eq(s, "/w/node_modules /w/src");
        free(s);
        s = glob("{\"glob\":\"/w/*\",\"includeDirs\":false}", "/");
        cr_assert_str_eq(s, "/w/README.md /w/link");
        free(s);
        s = glob("{\"glob\":\"/w/**\"}", "/");
        cr_assert(strncmp(s, "/w /w/README.md", 15) == 0, "%s", s);
        free(s);
        s = glob("{\"glob\":\"/w/*/main.{ts,js}\"}", "/");
        cr_assert_str_eq(s, "/w/src/main.ts");
        free(s);
}

Test(gw_walk, expand_glob_refusals)
{
        json_t *p = json_loads("{\"glob\":\"/w/*/../x\"}", 0, NULL);
        GwGlobber *g;
        char *why = NULL;

        cr_assert_eq(gw_globber_new(p, "/", &g, &why), -EOPNOTSUPP);
        free(why);
        json_decref(p);
}
