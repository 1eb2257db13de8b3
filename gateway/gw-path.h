/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * POSIX path arithmetic with the semantics of Deno's @std/path (posix): what walk() and
 * expandGlob() report as paths must look exactly as they would from the SDK's own backend. Pure
 * string functions; nothing touches a file system.
 */

/* normalize(): "." and ".." resolved lexically, repeated slashes collapsed, a trailing slash kept;
 * "" becomes ".". malloc'ed; NULL when memory runs out. */
char *gw_path_normalize(const char *path);

/* join(a, b) = normalize(a + "/" + b), skipping empty parts; "." when both are empty. */
char *gw_path_join(const char *a, const char *b);

/* basename(): the last component, trailing slashes ignored; "/" gives "". malloc'ed. */
char *gw_path_basename(const char *path);

/* resolve(base, path): path when absolute, else normalize(base + "/" + path); base must be
 * absolute. malloc'ed. */
char *gw_path_resolve(const char *base, const char *path);

/* The non-empty components of a path, in order, as a NULL-terminated malloc'ed list; -ENOMEM. */
int gw_path_split(const char *path, char ***ret);
