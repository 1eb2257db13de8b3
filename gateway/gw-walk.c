/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/gw-walk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "gateway/gw-jsonrpc.h"
#include "gateway/gw-path.h"
#include "gateway/gw-values.h"

static int problem(char **ret, int r, const char *fmt, ...) _printf_(3, 4);

static void *mfree(void *p)
{
        free(p);
        return NULL;
}

static int problem(char **ret, int r, const char *fmt, ...)
{
        va_list ap;

        if (ret) {
                va_start(ap, fmt);
                if (vasprintf(ret, fmt, ap) < 0)
                        *ret = NULL;
                va_end(ap);
        }
        return r;
}

typedef struct Patterns {
        /* NULL-less array; `present` distinguishes an absent list from an empty one. */
        GwRegex **re;
        size_t n;
        bool present;
} Patterns;

static void patterns_done(Patterns *p)
{
        for (size_t i = 0; i < p->n; i++)
                gw_regex_free(p->re[i]);
        free(p->re);
        *p = (Patterns){ 0 };
}

/* 1 when any pattern matches, 0 when none does, -E2BIG at a match limit. */
static int patterns_any(const Patterns *p, const char *s)
{
        for (size_t i = 0; i < p->n; i++) {
                int r = gw_regex_test(p->re[i], s, strlen(s));
                if (r != 0)
                        return r;
        }
        return 0;
}

/* walk()'s match / skip: RegExps serialised as {source, flags}. */
static int parse_regexes(json_t *params, const char *key, Patterns *ret, char **ret_problem)
{
        json_t *a, *e;
        size_t i;
        int r;

        r = gw_param_array(params, key, &a);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return problem(ret_problem, -EINVAL, "%s: must be an array of regular expressions", key);
        if (json_array_size(a) > GW_WALK_PATTERNS_MAX)
                return problem(ret_problem, -EINVAL, "%s: at most %d patterns are allowed", key,
                               GW_WALK_PATTERNS_MAX);
        ret->re = calloc(json_array_size(a) + 1, sizeof(GwRegex *));
        if (!ret->re)
                return -ENOMEM;
        ret->present = true;
        json_array_foreach(a, i, e)
        {
                const char *source, *flags = "";
                _cleanup_free_ char *why = NULL;

                if (gw_param_string(e, "source", &source) < 0 ||
                    (gw_param_string(e, "flags", &flags) < 0 && json_object_get(e, "flags")))
                        return problem(ret_problem, -EINVAL, "%s[%zu]: must be {source, flags}", key, i);
                r = gw_regex_new(source, flags, &ret->re[ret->n], &why);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return problem(ret_problem, -EINVAL,
                                       "%s[%zu]: invalid regular expression /%.200s/%s: %s", key, i, source,
                                       flags, why ? why : "too long");
                ret->n++;
        }
        return 0;
}

static json_t *entry_json(const char *path, const char *name, Sbx__V1__FileType type)
{
        json_t *p = gw_json_text(path, strlen(path)), *n = gw_json_text(name, strlen(name));

        if (!p || !n) {
                json_decref(p);
                json_decref(n);
                return NULL;
        }
        return json_pack("{s:o, s:o, s:b, s:b, s:b}", "path", p, "name", n, "isFile",
                         type == SBX__V1__FILE_TYPE__FILE_TYPE_REGULAR, "isDirectory",
                         type == SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY, "isSymlink",
                         type == SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK);
}

static int append_entry(json_t *out, const char *path, Sbx__V1__FileType type)
{
        _cleanup_free_ char *name = gw_path_basename(path);
        json_t *e;

        if (!name)
                return -ENOMEM;
        e = entry_json(path, name, type);
        if (!e || json_array_append_new(out, e) < 0)
                return -ENOMEM;
        return 0;
}

/* Whether rel lies under the directory prefix (itself excluded). */
static bool under(const char *rel, const char *prefix)
{
        const char *rest = startswith(rel, prefix);
        return rest && *rest == '/';
}

/* ---- walk ---- */

struct GwWalker {
        char *root;
        /* -1: unlimited (the SDK's default, Infinity, cannot be sent). */
        long long max_depth;
        bool include_files, include_dirs, include_symlinks, follow;
        char **exts;
        Patterns match, skip;
        bool done;
        /* A directory whose subtree is not reported (skipped, or at the depth limit). */
        char *prune;
};

GwWalker *gw_walker_free(GwWalker *w)
{
        if (!w)
                return NULL;
        free(w->root);
        strv_free(w->exts);
        patterns_done(&w->match);
        patterns_done(&w->skip);
        free(w->prune);
        free(w);
        return NULL;
}

static int bool_param(json_t *params, const char *key, bool def, bool *ret, char **ret_problem)
{
        int r = gw_param_bool(params, key, ret);
        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0)
                return problem(ret_problem, -EINVAL, "%s: must be a boolean", key);
        return 0;
}

int gw_walker_new(json_t *params, GwWalker **ret, char **ret_problem)
{
        _cleanup_(gw_walker_freep) GwWalker *w = new0(GwWalker, 1);
        const char *root;
        long long depth;
        json_t *exts, *e;
        size_t i;
        int r;

        if (ret_problem)
                *ret_problem = NULL;
        if (!w)
                return -ENOMEM;
        if (gw_param_string(params, "path", &root) < 0)
                return problem(ret_problem, -EINVAL, "path: must be a string");
        w->root = strdup(root);
        if (!w->root)
                return -ENOMEM;
        w->max_depth = -1;
        r = gw_param_int(params, "maxDepth", -(1LL << 53), 1LL << 53, &depth);
        if (r == 0)
                /* walk() yields nothing at all for a negative depth: -2 stands for that. */
                w->max_depth = depth < 0 ? -2 : depth;
        else if (r != -ENOENT)
                return problem(ret_problem, -EINVAL, "maxDepth: must be an integer");
        if ((r = bool_param(params, "includeFiles", true, &w->include_files, ret_problem)) < 0 ||
            (r = bool_param(params, "includeDirs", true, &w->include_dirs, ret_problem)) < 0 ||
            (r = bool_param(params, "includeSymlinks", true, &w->include_symlinks, ret_problem)) < 0 ||
            (r = bool_param(params, "followSymlinks", false, &w->follow, ret_problem)) < 0)
                return r;
        r = gw_param_array(params, "exts", &exts);
        if (r == 0) {
                w->exts = calloc(1, sizeof(char *));
                if (!w->exts)
                        return -ENOMEM;
                if (json_array_size(exts) > GW_WALK_PATTERNS_MAX)
                        return problem(ret_problem, -EINVAL, "exts: at most %d extensions are allowed",
                                       GW_WALK_PATTERNS_MAX);
                json_array_foreach(exts, i, e)
                {
                        _cleanup_free_ char *x = NULL;
                        if (!json_is_string(e))
                                return problem(ret_problem, -EINVAL, "exts[%zu]: must be a string", i);
                        const char *s = json_string_value(e);
                        if (asprintf(&x, "%s%s", s[0] == '.' ? "" : ".", s) < 0 ||
                            strv_extend(&w->exts, x) < 0)
                                return -ENOMEM;
                }
        } else if (r != -ENOENT)
                return problem(ret_problem, -EINVAL, "exts: must be an array of strings");
        if ((r = parse_regexes(params, "match", &w->match, ret_problem)) < 0 ||
            (r = parse_regexes(params, "skip", &w->skip, ret_problem)) < 0)
                return r;
        *ret = TAKE_PTR(w);
        return 0;
}

const char *gw_walker_root(const GwWalker *w)
{
        return w->root;
}

uint32_t gw_walker_agent_depth(const GwWalker *w)
{
        /* The agent's max_depth N lists depths up to N except for N = 1 (root only), and 0 is
         * unlimited: ask for one more than needed and filter. */
        if (w->max_depth == -1)
                return 0;
        if (w->max_depth < 1)
                return 1;
        return w->max_depth >= UINT32_MAX - 1 ? 0 : (uint32_t)w->max_depth + 1;
}

bool gw_walker_follow(const GwWalker *w)
{
        return w->follow;
}

/* walk()'s include(): exts and match (when `filters`), then skip. 1, 0 or -E2BIG. */
static int walker_include(const GwWalker *w, const char *path, bool filters)
{
        int r;

        if (filters && w->exts) {
                bool any = false;
                STRV_FOREACH (x, w->exts)
                        if (endswith(path, *x))
                                any = true;
                if (!any)
                        return 0;
        }
        if (filters && w->match.present) {
                r = patterns_any(&w->match, path);
                if (r <= 0)
                        return r;
        }
        r = patterns_any(&w->skip, path);
        return r < 0 ? r : !r;
}

int gw_walker_feed(GwWalker *w, const char *rel, Sbx__V1__FileType type, uint32_t depth, json_t *out)
{
        _cleanup_free_ char *path = NULL;
        int r;

        if (w->done)
                return 1;
        if (depth == 0) {
                if (w->max_depth == -2) {
                        w->done = true;
                        return 1;
                }
                path = gw_path_normalize(w->root);
                if (!path)
                        return -ENOMEM;
                if (w->include_dirs) {
                        r = walker_include(w, path, true);
                        if (r < 0)
                                return r;
                        if (r > 0 && append_entry(out, path, type) < 0)
                                return -ENOMEM;
                }
                r = walker_include(w, w->root, false);
                if (r < 0)
                        return r;
                if (w->max_depth == 0 || r == 0) {
                        w->done = true;
                        return 1;
                }
                if (type != SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY)
                        return -ENOTDIR;
                return 0;
        }
        if (w->max_depth >= 0 && depth > w->max_depth)
                return 0;
        if (w->prune) {
                if (under(rel, w->prune))
                        return 0;
                w->prune = mfree(w->prune);
        }
        path = gw_path_join(w->root, rel);
        if (!path)
                return -ENOMEM;

        switch (type) {
        case SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK:
                if (!w->include_symlinks)
                        return 0;
                r = walker_include(w, path, true);
                break;
        case SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY:
                if (w->include_dirs) {
                        r = walker_include(w, path, true);
                        if (r < 0)
                                return r;
                        if (r > 0 && append_entry(out, path, type) < 0)
                                return -ENOMEM;
                }
                r = walker_include(w, path, false);
                if (r < 0)
                        return r;
                if ((w->max_depth >= 0 && w->max_depth - (long long)depth < 1) || r == 0) {
                        w->prune = strdup(rel);
                        if (!w->prune)
                                return -ENOMEM;
                }
                return 0;
        default:
                if (!w->include_files)
                        return 0;
                r = walker_include(w, path, true);
                break;
        }
        if (r < 0)
                return r;
        if (r > 0 && append_entry(out, path, type) < 0)
                return -ENOMEM;
        return 0;
}

/* ---- expandGlob ---- */

typedef struct Segment {
        /* NULL for "**". */
        GwRegex *re;
} Segment;

typedef struct Match {
        char *path;
        Sbx__V1__FileType type;
} Match;

struct GwGlobber {
        char *root;
        Segment *segs;
        size_t n_segs;
        bool globstar, include_dirs, trailing_sep, follow;
        Patterns exclude;
        bool done;
        char *prune;
        Match *matches;
        size_t n_matches, alloc_matches;
};

GwGlobber *gw_globber_free(GwGlobber *g)
{
        if (!g)
                return NULL;
        free(g->root);
        for (size_t i = 0; i < g->n_segs; i++)
                gw_regex_free(g->segs[i].re);
        free(g->segs);
        patterns_done(&g->exclude);
        free(g->prune);
        for (size_t i = 0; i < g->n_matches; i++)
                free(g->matches[i].path);
        free(g->matches);
        free(g);
        return NULL;
}

bool gw_glob_params_need_cwd(json_t *params)
{
        const char *glob = "", *root;

        (void)gw_param_string(params, "glob", &glob);
        if (glob[0] == '/')
                return false;
        return gw_param_string(params, "root", &root) < 0 || root[0] != '/';
}

int gw_globber_new(json_t *params, const char *cwd, GwGlobber **ret, char **ret_problem)
{
        _cleanup_(gw_globber_freep) GwGlobber *g = new0(GwGlobber, 1);
        _cleanup_strv_free_ char **parts = NULL;
        _cleanup_free_ char *abs_root = NULL;
        GwGlobOptions o;
        const char *glob, *root = NULL;
        bool absolute;
        json_t *exclude, *e;
        size_t i, n_parts, first;
        int r;

        if (ret_problem)
                *ret_problem = NULL;
        if (!g)
                return -ENOMEM;
        if (gw_param_string(params, "glob", &glob) < 0)
                return problem(ret_problem, -EINVAL, "glob: must be a string");
        r = gw_param_string(params, "root", &root);
        if (r == -EINVAL)
                return problem(ret_problem, -EINVAL, "root: must be a string");
        if ((r = bool_param(params, "includeDirs", true, &g->include_dirs, ret_problem)) < 0 ||
            (r = bool_param(params, "extended", true, &o.extended, ret_problem)) < 0 ||
            (r = bool_param(params, "globstar", true, &o.globstar, ret_problem)) < 0 ||
            (r = bool_param(params, "caseInsensitive", false, &o.case_insensitive, ret_problem)) < 0 ||
            (r = bool_param(params, "followSymlinks", false, &g->follow, ret_problem)) < 0)
                return r;
        g->globstar = o.globstar;

        absolute = glob[0] == '/';
        size_t len = strlen(glob);
        g->trailing_sep = len > 0 && glob[len - 1] == '/';
        if (gw_path_split(glob, &parts) < 0)
                return -ENOMEM;
        /* Leading, trailing and repeated separators make empty parts; they are no segments. */
        n_parts = strv_length(parts);

        if (absolute)
                abs_root = strdup(root ? root : "/");
        else
                abs_root = gw_path_resolve(cwd, root ? root : ".");
        if (!abs_root)
                return -ENOMEM;

        r = gw_param_array(params, "exclude", &exclude);
        if (r == 0) {
                if (json_array_size(exclude) > GW_WALK_PATTERNS_MAX)
                        return problem(ret_problem, -EINVAL, "exclude: at most %d patterns are allowed",
                                       GW_WALK_PATTERNS_MAX);
                g->exclude.re = calloc(json_array_size(exclude) + 1, sizeof(GwRegex *));
                if (!g->exclude.re)
                        return -ENOMEM;
                g->exclude.present = true;
                json_array_foreach(exclude, i, e)
                {
                        _cleanup_free_ char *resolved = NULL;
                        if (!json_is_string(e))
                                return problem(ret_problem, -EINVAL, "exclude[%zu]: must be a string", i);
                        resolved = gw_path_resolve(abs_root, json_string_value(e));
                        if (!resolved)
                                return -ENOMEM;
                        r = gw_glob_compile(resolved, &o, &g->exclude.re[g->exclude.n]);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                return problem(ret_problem, -EINVAL, "exclude[%zu]: not a usable glob", i);
                        g->exclude.n++;
                }
        } else if (r != -ENOENT)
                return problem(ret_problem, -EINVAL, "exclude: must be an array of strings");

        /* The leading plain segments form the directory the search starts from. */
        g->root = strdup(absolute ? "/" : abs_root);
        if (!g->root)
                return -ENOMEM;
        for (first = 0; first < n_parts; first++) {
                char *next, *plain;
                if (isempty(parts[first]))
                        continue;
                if (gw_is_glob(parts[first]))
                        break;
                plain = gw_glob_unescape(parts[first]);
                if (!plain)
                        return -ENOMEM;
                next = gw_path_join(g->root, plain);
                free(plain);
                if (!next)
                        return -ENOMEM;
                free(g->root);
                g->root = next;
        }
        g->segs = calloc(n_parts + 1, sizeof(Segment));
        if (!g->segs)
                return -ENOMEM;
        for (i = first; i < n_parts; i++) {
                if (isempty(parts[i]))
                        continue;
                if (streq(parts[i], ".."))
                        return problem(ret_problem, -EOPNOTSUPP,
                                       "glob: \"..\" after a pattern is not supported by sbx");
                Segment *s = &g->segs[g->n_segs];
                if (!streq(parts[i], "**")) {
                        r = gw_glob_compile(parts[i], &o, &s->re);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                return problem(ret_problem, -EINVAL,
                                               "glob: segment \"%.200s\" is not usable", parts[i]);
                } else if (g->n_segs > 0 && !g->segs[g->n_segs - 1].re)
                        /* "**" after "**" adds nothing. */
                        continue;
                g->n_segs++;
        }
        *ret = TAKE_PTR(g);
        return 0;
}

const char *gw_globber_root(const GwGlobber *g)
{
        return g->root;
}

bool gw_globber_follow(const GwGlobber *g)
{
        return g->follow;
}

uint32_t gw_globber_agent_depth(const GwGlobber *g)
{
        for (size_t i = 0; i < g->n_segs; i++)
                if (!g->segs[i].re && g->globstar)
                        return 0;
        /* One more than needed: see gw_walker_agent_depth(). */
        return (uint32_t)g->n_segs + 1;
}

/*
 * Whether segments j.. match the components comp[i..] of an entry of type `type`, the first i
 * components being the directory the segment is applied to (memo caches results by (i, j): -1
 * unknown). Like expandGlob(), a segment only applies to a directory: components before the last
 * are directories by construction, the entry itself only when it is one. "**" yields its directory
 * and everything below it (only one level without globstar).
 */
static int match_from(const GwGlobber *g, char **comp, size_t n, size_t i, size_t j, Sbx__V1__FileType type,
                      signed char *memo)
{
        signed char *m = &memo[i * (g->n_segs + 1) + j];
        int r = 0;

        if (*m >= 0)
                return *m;
        if (j == g->n_segs)
                r = i == n;
        else if (i == n && type != SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY)
                r = 0;
        else if (!g->segs[j].re) {
                size_t last = g->globstar ? n : SBX_MIN(n, i + 1);
                for (size_t k = i; r == 0 && k <= last; k++)
                        r = match_from(g, comp, n, k, j + 1, type, memo);
        } else if (i < n) {
                r = gw_regex_test(g->segs[j].re, comp[i], strlen(comp[i]));
                if (r > 0)
                        r = match_from(g, comp, n, i + 1, j + 1, type, memo);
        }
        if (r < 0)
                return r;
        *m = (signed char)r;
        return r;
}

static int add_match(GwGlobber *g, const char *path, Sbx__V1__FileType type)
{
        if (g->n_matches >= GW_GLOB_RESULTS_MAX)
                return -E2BIG;
        if (g->n_matches == g->alloc_matches) {
                size_t n = g->alloc_matches ? g->alloc_matches * 2 : 64;
                Match *m = reallocarray(g->matches, n, sizeof(Match));
                if (!m)
                        return -ENOMEM;
                g->matches = m;
                g->alloc_matches = n;
        }
        g->matches[g->n_matches].path = strdup(path);
        if (!g->matches[g->n_matches].path)
                return -ENOMEM;
        g->matches[g->n_matches++].type = type;
        return 0;
}

int gw_globber_feed(GwGlobber *g, const char *rel, Sbx__V1__FileType type, uint32_t depth)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_strv_free_ char **comp = NULL;
        _cleanup_free_ signed char *memo = NULL;
        size_t n;
        int r;

        if (g->done)
                return 0;
        if (depth == 0) {
                path = gw_path_normalize(g->root);
                if (!path)
                        return -ENOMEM;
                /* A glob without patterns names its root; with patterns, an excluded root stops all. */
                if (g->n_segs == 0)
                        return add_match(g, path, type);
                r = patterns_any(&g->exclude, path);
                if (r != 0) {
                        g->done = true;
                        return r < 0 ? r : 0;
                }
                goto match;
        }
        if (g->prune) {
                if (under(rel, g->prune))
                        return 0;
                g->prune = mfree(g->prune);
        }
        path = gw_path_join(g->root, rel);
        if (!path)
                return -ENOMEM;
        r = patterns_any(&g->exclude, path);
        if (r < 0)
                return r;
        if (r > 0) {
                if (type == SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY && !(g->prune = strdup(rel)))
                        return -ENOMEM;
                return 0;
        }
match:
        if (gw_path_split(rel, &comp) < 0)
                return -ENOMEM;
        n = strv_length(comp);
        memo = malloc((n + 1) * (g->n_segs + 1));
        if (!memo)
                return -ENOMEM;
        memset(memo, -1, (n + 1) * (g->n_segs + 1));
        r = match_from(g, comp, n, 0, 0, type, memo);
        if (r <= 0)
                return r;
        return add_match(g, path, type);
}

static int compare_matches(const void *a, const void *b)
{
        return strcmp(((const Match *)a)->path, ((const Match *)b)->path);
}

int gw_globber_finish(GwGlobber *g, json_t *out)
{
        qsort_safe(g->matches, g->n_matches, sizeof(Match), compare_matches);
        for (size_t i = 0; i < g->n_matches; i++) {
                const Match *m = &g->matches[i];
                bool dir = m->type == SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY;
                if ((g->trailing_sep && !dir) || (!g->include_dirs && dir))
                        continue;
                if (append_entry(out, m->path, m->type) < 0)
                        return -ENOMEM;
        }
        return 0;
}
