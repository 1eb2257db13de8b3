/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * walk() and expandGlob() of Deno's @std/fs (deno-sandbox-protocol.md §1.4, §2.8 methods 37-38),
 * computed from the agent's Walk stream: a pre-order listing of a tree (paths relative to its
 * root, file types, depths). A GwWalker filters that listing the way walk() would have produced
 * it (maxDepth, includeFiles/Dirs/Symlinks, exts, match, skip); a GwGlobber matches it against
 * the segments of a glob the way expandGlob() does (globstar, extended globs, exclude,
 * includeDirs, a trailing slash) and sorts the result by path, as expandGlob() yields it.
 *
 * Each result is one WalkEntry {path, name, isFile, isDirectory, isSymlink}. Pure logic; the
 * caller runs the Walk call and feeds its entries in order.
 *
 * Differences, documented in docs/deno-sdk.md: with followSymlinks, symbolic links are followed
 * but the reported paths are those under the link (not canonicalized), and "..", as a glob
 * segment after the first pattern, is not supported.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway/gw-glob.h"
#include "proto/sbx/v1/data.pb-c.h"

/* Most entries an expandGlob() may produce (they are sorted, so they are held). */
#define GW_GLOB_RESULTS_MAX 100000
/* Most patterns in match, skip or exclude. */
#define GW_WALK_PATTERNS_MAX 64

typedef struct GwWalker GwWalker;
typedef struct GwGlobber GwGlobber;

/*
 * Creates a walker from walk()'s parameters object ({path, maxDepth?, includeFiles?, includeDirs?,
 * includeSymlinks?, followSymlinks?, canonicalize?, exts?, match?, skip?}). -EINVAL for a bad
 * parameter, with a malloc'ed reason in *ret_problem.
 */
int gw_walker_new(json_t *params, GwWalker **ret, char **ret_problem);
GwWalker *gw_walker_free(GwWalker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(GwWalker *, gw_walker_free);

/* What to ask the agent: the root, the depth (0 = unlimited) and whether to follow links. */
const char *gw_walker_root(const GwWalker *w);
uint32_t gw_walker_agent_depth(const GwWalker *w);
bool gw_walker_follow(const GwWalker *w);

/*
 * One entry of the Walk stream. Appends the WalkEntry documents to emit (zero or one) to the JSON
 * array `out`. Returns 0 to continue, 1 when nothing more can be emitted (the caller may end the
 * walk), -ENOTDIR when the root is not a directory (walk() fails reading it), -E2BIG when a
 * pattern hit its match limit, -ENOMEM.
 */
int gw_walker_feed(GwWalker *w, const char *rel, Sbx__V1__FileType type, uint32_t depth, json_t *out);

/*
 * Creates a globber from expandGlob()'s parameters ({glob, root?, exclude?, includeDirs?,
 * extended?, globstar?, caseInsensitive?, followSymlinks?, canonicalize?}). `cwd` is the absolute
 * directory relative globs and roots resolve against. -EINVAL / -EOPNOTSUPP with a reason.
 */
int gw_globber_new(json_t *params, const char *cwd, GwGlobber **ret, char **ret_problem);
GwGlobber *gw_globber_free(GwGlobber *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(GwGlobber *, gw_globber_free);

/* Whether the glob needs `cwd` (it is relative, or has a relative root). */
bool gw_glob_params_need_cwd(json_t *params);

const char *gw_globber_root(const GwGlobber *g);
uint32_t gw_globber_agent_depth(const GwGlobber *g);
bool gw_globber_follow(const GwGlobber *g);

/* One entry of the Walk stream from gw_globber_root(). -E2BIG for too many matches or a pattern
 * at its match limit, -ENOMEM. */
int gw_globber_feed(GwGlobber *g, const char *rel, Sbx__V1__FileType type, uint32_t depth);

/* The matches, sorted by path and filtered, appended to the JSON array `out`. */
int gw_globber_finish(GwGlobber *g, json_t *out);
