/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Shared between the parsers (config-parsers.c) and the loader and printers (config.c): what the
 * loader needs to know about a parser without calling it, i.e. how its field is freed, whether
 * "unset" is visible in the field, what to call its value in --help, and how to describe what it
 * allows.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config/config.h"

/* Limits of the file syntax; config.h documents them. */
#define SBX_CONFIG_FILE_MAX (1024 * 1024)
#define SBX_CONFIG_LINE_MAX 4096

typedef enum SbxConfigKind {
        SBX_CONFIG_KIND_CUSTOM, /* a parser this module does not know */
        SBX_CONFIG_KIND_STRING,
        SBX_CONFIG_KIND_STRV,
        SBX_CONFIG_KIND_BOOL,
        SBX_CONFIG_KIND_INT,
        SBX_CONFIG_KIND_UINT32,
        SBX_CONFIG_KIND_SIZE,
        SBX_CONFIG_KIND_DURATION,
        SBX_CONFIG_KIND_CHOICE,
        SBX_CONFIG_KIND_ADDRESS,
        SBX_CONFIG_KIND_LOG_LEVEL,
        SBX_CONFIG_KIND_LOG_FORMAT,
} SbxConfigKind;

typedef struct SbxConfigKindInfo {
        SbxConfigKind kind;
        /* Placeholder for --help when the option has none. */
        const char *metavar;
        /* Frees the field; NULL for plain values. */
        SbxConfigFreer free;
        /* The field is a pointer that is NULL while unset (strings and lists), which makes both
         * "required" and "an empty value unsets" checkable on the field itself. */
        bool pointer;
        /* How the zero field reads back, for value kinds without a default; NULL when unknown. */
        const char *zero_text;
} SbxConfigKindInfo;

/* Never NULL: parsers this module does not know get SBX_CONFIG_KIND_CUSTOM. */
const SbxConfigKindInfo *sbx__config_kind(const SbxConfigOption *o);

/* True when the option has an inclusive range (min and max not both 0). */
static inline bool sbx__config_bounded(const SbxConfigOption *o)
{
        return o->min != 0 || o->max != 0;
}

/*
 * What the option allows besides its syntax, for --help and the example file: "768..4096",
 * ">= 1", "1MiB..1GiB", "text, json". *ret is NULL when there is nothing to add.
 * -ENOMEM on exhaustion.
 */
int sbx__config_describe_allowed(const SbxConfigOption *o, char **ret);
