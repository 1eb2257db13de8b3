/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What sbx prints: tables for people, JSON for scripts, and the time formats both use. JSON is
 * built with jansson from the protobuf-c descriptors, so every field of every reply appears
 * without a hand-written encoder per message.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/base/string-util.h"
#include "common/crypto/crypto.h"

/* Width of the key column of key/value blocks ("data address:" plus a space). */
#define FIELD_KEY_WIDTH 15
/* Spaces between table columns. */
#define TABLE_GAP 3

/* ---- tables ---- */

struct CliTable {
        size_t n_columns;
        /* Headers first, then the cells row by row. */
        char **cells;
        size_t n_cells;
        size_t alloc;
        int error;
};

static void table_push(CliTable *t, char *owned)
{
        if (!owned) {
                t->error = -ENOMEM;
                return;
        }
        if (t->n_cells == t->alloc) {
                size_t alloc = t->alloc ? t->alloc * 2 : 64;
                char **cells = reallocarray(t->cells, alloc, sizeof(char *));
                if (!cells) {
                        free(owned);
                        t->error = -ENOMEM;
                        return;
                }
                t->cells = cells;
                t->alloc = alloc;
        }
        t->cells[t->n_cells++] = owned;
}

int cli_table_new(CliTable **ret, ...)
{
        CliTable *t = new0(CliTable, 1);
        const char *h;
        va_list ap;

        if (!t)
                return -ENOMEM;
        va_start(ap, ret);
        while ((h = va_arg(ap, const char *))) {
                table_push(t, strdup(h));
                t->n_columns++;
        }
        va_end(ap);
        if (t->error < 0 || t->n_columns == 0) {
                int r = t->error < 0 ? t->error : -EINVAL;
                cli_table_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

CliTable *cli_table_free(CliTable *t)
{
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

void cli_table_cell(CliTable *t, const char *text)
{
        table_push(t, strdup(isempty(text) ? "-" : text));
}

void cli_table_cellf(CliTable *t, const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        table_push(t, s);
}

/* Columns are measured in characters, not bytes, so that UTF-8 in labels keeps them aligned. */
static size_t display_width(const char *s)
{
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char)*s & 0xc0) != 0x80)
                        w++;
        return w;
}

int cli_table_print(CliTable *t)
{
        _cleanup_free_ size_t *width = NULL;

        if (t->error < 0)
                return t->error;
        if (t->n_cells % t->n_columns != 0)
                return -EINVAL;
        width = new0(size_t, t->n_columns);
        if (!width)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_cells; i++)
                width[i % t->n_columns] = SBX_MAX(width[i % t->n_columns], display_width(t->cells[i]));
        for (size_t i = 0; i < t->n_cells; i++) {
                size_t col = i % t->n_columns;
                bool last = col == t->n_columns - 1;
                fputs(t->cells[i], stdout);
                if (last)
                        fputc('\n', stdout);
                else
                        printf("%*s", (int)(width[col] - display_width(t->cells[i]) + TABLE_GAP), "");
        }
        return 0;
}

int cli_join(char *const *items, size_t n, const char *sep, char **ret)
{
        size_t len = 1, off = 0;
        char *s;

        for (size_t i = 0; i < n; i++)
                len += strlen(items[i]) + (i > 0 ? strlen(sep) : 0);
        s = malloc(len);
        if (!s)
                return -ENOMEM;
        s[0] = '\0';
        for (size_t i = 0; i < n; i++)
                off += (size_t)snprintf(s + off, len - off, "%s%s", i > 0 ? sep : "", items[i]);
        *ret = s;
        return 0;
}

void cli_field(const char *key, const char *fmt, ...)
{
        va_list ap;

        /* An empty key continues the previous field's list on the next line. */
        if (*key)
                printf("%s:%*s", key, (int)SBX_MAX(1, FIELD_KEY_WIDTH - (int)strlen(key) - 1), "");
        else
                printf("%*s", FIELD_KEY_WIDTH, "");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
}

/* ---- JSON ---- */

static json_t *json_from_string(const char *s)
{
        json_t *j = json_string(s ? s : "");
        if (j)
                return j;
        /* Not UTF-8 (protobuf-c does not check): keep ASCII and mark the rest, never drop the field. */
        _cleanup_free_ char *copy = strdup(s);
        if (!copy)
                return NULL;
        for (char *p = copy; *p; p++)
                if ((unsigned char)*p >= 0x80)
                        *p = '?';
        return json_string(copy);
}

static json_t *json_from_uint64(uint64_t v)
{
        /* jansson integers are signed 64-bit; the rare larger value is written as a string. */
        if (v > (uint64_t)INT64_MAX)
                return json_sprintf("%" PRIu64, v);
        return json_integer((json_int_t)v);
}

static json_t *json_from_value(const ProtobufCFieldDescriptor *f, const void *p)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                return json_integer(*(const int32_t *)p);
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                return json_integer(*(const uint32_t *)p);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                return json_integer(*(const int64_t *)p);
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return json_from_uint64(*(const uint64_t *)p);
        case PROTOBUF_C_TYPE_FLOAT:
                return json_real(*(const float *)p);
        case PROTOBUF_C_TYPE_DOUBLE:
                return json_real(*(const double *)p);
        case PROTOBUF_C_TYPE_BOOL:
                return json_boolean(*(const protobuf_c_boolean *)p);
        case PROTOBUF_C_TYPE_ENUM: {
                int v = *(const int *)p;
                const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
                return ev ? json_string(ev->name) : json_integer(v);
        }
        case PROTOBUF_C_TYPE_STRING:
                return json_from_string(*(char *const *)p);
        case PROTOBUF_C_TYPE_BYTES: {
                const ProtobufCBinaryData *b = p;
                _cleanup_free_ char *s = NULL;
                if (sbx_base64_encode(b->data, b->len, &s) < 0)
                        return NULL;
                return json_string(s);
        }
        case PROTOBUF_C_TYPE_MESSAGE:
                return *(ProtobufCMessage *const *)p ? cli_json_from_message(*(ProtobufCMessage *const *)p)
                                                     : json_null();
        }
        return json_null();
}

static size_t value_size(const ProtobufCFieldDescriptor *f)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return sizeof(uint64_t);
        case PROTOBUF_C_TYPE_DOUBLE:
                return sizeof(double);
        case PROTOBUF_C_TYPE_FLOAT:
                return sizeof(float);
        case PROTOBUF_C_TYPE_BOOL:
                return sizeof(protobuf_c_boolean);
        case PROTOBUF_C_TYPE_ENUM:
                return sizeof(int);
        case PROTOBUF_C_TYPE_STRING:
        case PROTOBUF_C_TYPE_MESSAGE:
                return sizeof(void *);
        case PROTOBUF_C_TYPE_BYTES:
                return sizeof(ProtobufCBinaryData);
        default:
                return sizeof(uint32_t);
        }
}

/* protobuf-c has no map type: a map is a repeated "…Entry" message of exactly key and value. */
static bool is_map(const ProtobufCFieldDescriptor *f)
{
        const ProtobufCMessageDescriptor *d = f->descriptor;
        return f->type == PROTOBUF_C_TYPE_MESSAGE && f->label == PROTOBUF_C_LABEL_REPEATED &&
               endswith(d->short_name, "Entry") && d->n_fields == 2 && streq(d->fields[0].name, "key") &&
               streq(d->fields[1].name, "value");
}

static json_t *json_from_map(const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *entries, size_t n)
{
        const ProtobufCMessageDescriptor *d = f->descriptor;
        json_t *obj = json_object();

        for (size_t i = 0; obj && i < n; i++) {
                const char *e = (const char *)entries[i];
                const ProtobufCFieldDescriptor *kf = &d->fields[0], *vf = &d->fields[1];
                json_t *key = json_from_value(kf, e + kf->offset);
                json_t *value = json_from_value(vf, e + vf->offset);
                _cleanup_free_ char *numeric = NULL;
                const char *k = NULL;

                if (json_is_string(key))
                        k = json_string_value(key);
                else if (json_is_integer(key) &&
                         asprintf(&numeric, "%" JSON_INTEGER_FORMAT, json_integer_value(key)) >= 0)
                        k = numeric;
                else if (json_is_boolean(key))
                        k = json_is_true(key) ? "true" : "false";
                if (!k || !value || json_object_set_new(obj, k, value) < 0) {
                        if (!k)
                                json_decref(value);
                        json_decref(obj);
                        obj = NULL;
                }
                json_decref(key);
        }
        return obj;
}

/* Whether a singular field carries a value, following protobuf-c's presence rules. */
static bool field_present(const ProtobufCFieldDescriptor *f, const char *m)
{
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                return *(const uint32_t *)(m + f->quantifier_offset) == f->id;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                return *(void *const *)(m + f->offset) != NULL;
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
                if (f->type == PROTOBUF_C_TYPE_STRING)
                        return *(void *const *)(m + f->offset) != NULL;
                return *(const protobuf_c_boolean *)(m + f->quantifier_offset);
        }
        return true;
}

json_t *cli_json_from_message(const ProtobufCMessage *msg)
{
        const ProtobufCMessageDescriptor *d = msg->descriptor;
        const char *m = (const char *)msg;
        json_t *obj = json_object();

        for (unsigned i = 0; obj && i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                json_t *v = NULL;

                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *)(m + f->quantifier_offset);
                        const char *items = *(const char *const *)(m + f->offset);
                        if (is_map(f)) {
                                v = json_from_map(f, (ProtobufCMessage *const *)items, n);
                        } else {
                                v = json_array();
                                for (size_t k = 0; v && k < n; k++)
                                        if (json_array_append_new(
                                                    v, json_from_value(f, items + k * value_size(f))) < 0) {
                                                json_decref(v);
                                                v = NULL;
                                        }
                        }
                } else if (field_present(f, m)) {
                        v = json_from_value(f, m + f->offset);
                } else {
                        continue;
                }
                if (!v || json_object_set_new(obj, f->name, v) < 0) {
                        json_decref(obj);
                        obj = NULL;
                }
        }
        return obj;
}

int cli_json_print(json_t *j)
{
        int r;

        if (!j)
                return -ENOMEM;
        r = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(j);
        if (r < 0)
                return -EIO;
        fputc('\n', stdout);
        return 0;
}

int cli_json_print_message(const ProtobufCMessage *m)
{
        return cli_json_print(cli_json_from_message(m));
}

int cli_json_print_messages(ProtobufCMessage *const *items, size_t n)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                if (json_array_append_new(a, cli_json_from_message(items[i])) < 0) {
                        json_decref(a);
                        a = NULL;
                }
        return cli_json_print(a);
}

/* ---- enums ---- */

const char *cli_enum_name(const ProtobufCEnumDescriptor *d, int value, const char *prefix, char *buf,
                          size_t n)
{
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, value);
        const char *name = ev ? startswith(ev->name, prefix) : NULL;
        size_t i = 0;

        if (!name)
                name = "unknown";
        for (; name[i] && i + 1 < n; i++)
                buf[i] = (char)tolower((unsigned char)name[i]);
        buf[i] = '\0';
        return buf;
}

int cli_enum_parse(const ProtobufCEnumDescriptor *d, const char *prefix, const char *s, int *ret)
{
        _cleanup_free_ char *name = NULL;
        const ProtobufCEnumValue *ev;

        if (asprintf(&name, "%s%s", startswith(s, prefix) ? "" : prefix, s) < 0)
                return -ENOMEM;
        for (char *p = name; *p; p++)
                *p = (char)toupper((unsigned char)*p);
        ev = protobuf_c_enum_descriptor_get_value_by_name(d, name);
        if (!ev || ev->value == 0)
                return -EINVAL;
        *ret = ev->value;
        return 0;
}

/* ---- times ---- */

char *cli_format_time(char *buf, size_t n, int64_t unix_ms)
{
        if (unix_ms <= 0) {
                snprintf(buf, n, "-");
                return buf;
        }
        return sbx_format_timestamp(buf, n, (usec_t)unix_ms * USEC_PER_MSEC);
}

char *cli_format_relative(char *buf, size_t n, int64_t unix_ms)
{
        char d[SBX_DURATION_MAX];
        int64_t delta;
        usec_t a;

        if (unix_ms <= 0) {
                snprintf(buf, n, "-");
                return buf;
        }
        delta = unix_ms - cli_now_ms();
        a = (usec_t)(delta < 0 ? -delta : delta) * USEC_PER_MSEC;
        if (a < USEC_PER_SEC) {
                snprintf(buf, n, "now");
                return buf;
        }
        /* Two units at most: "29m", "1h30m", "2d3h". */
        if (a < USEC_PER_MINUTE)
                a -= a % USEC_PER_SEC;
        else if (a < USEC_PER_DAY)
                a -= a % USEC_PER_MINUTE;
        else
                a -= a % USEC_PER_HOUR;
        sbx_format_duration(d, sizeof(d), a);
        snprintf(buf, n, delta > 0 ? "in %s" : "%s ago", d);
        return buf;
}

char *cli_format_when(char *buf, size_t n, int64_t unix_ms)
{
        char t[CLI_TIME_MAX], rel[CLI_TIME_MAX];

        if (unix_ms <= 0) {
                snprintf(buf, n, "-");
                return buf;
        }
        snprintf(buf, n, "%s (%s)", cli_format_time(t, sizeof(t), unix_ms),
                 cli_format_relative(rel, sizeof(rel), unix_ms));
        return buf;
}
