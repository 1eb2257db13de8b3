/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File operations inside the guest. They run as root (the sandbox is its owner's to change), but
 * whatever they create belongs to the sandbox's default user, so that the processes the user runs
 * can work with it. Reads and walks stream under the agent's credit; writes stream under ours.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/base/buffer.h"
#include "common/base/fd-util.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "guest/guest.h"

/* Directory listings and walks stop descending past this depth (a guard against loops). */
#define WALK_DEPTH_MAX 256
#define READDIR_MAX    100000

typedef enum FileKind {
        FILE_READ,
        FILE_WRITE,
        FILE_WALK,
        FILE_HANDLE,
} FileKind;

typedef struct WalkDir {
        DIR *d;
        char *path; /* relative to the root */
        unsigned depth;
} WalkDir;

typedef struct FileStream {
        struct FileStream *next;
        uint32_t stream;
        FileKind kind;
        int fd;
        /* reads */
        uint64_t left; /* bytes still to send; UINT64_MAX for "to the end" */
        uint32_t credit;
        /* writes */
        uint64_t written;
        uint32_t returned;
        bool created;
        /* walks */
        char *root;
        WalkDir *stack;
        size_t depth;
        unsigned max_depth;
        bool follow;
} FileStream;

static FileStream *streams;

static FileStream *find(uint32_t stream)
{
        for (FileStream *s = streams; s; s = s->next)
                if (s->stream == stream)
                        return s;
        return NULL;
}

static void stream_free(FileStream *s)
{
        for (FileStream **pp = &streams; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        break;
                }
        if (s->fd >= 0)
                close(s->fd);
        for (size_t i = 0; i < s->depth; i++) {
                closedir(s->stack[i].d);
                free(s->stack[i].path);
        }
        free(s->stack);
        free(s->root);
        free(s);
}

static FileStream *stream_new(uint32_t stream, FileKind kind)
{
        FileStream *s = calloc(1, sizeof(FileStream));
        if (!s)
                return NULL;
        s->stream = stream;
        s->kind = kind;
        s->fd = -1;
        s->credit = SBX_CHANNEL_CREDIT;
        s->next = streams;
        streams = s;
        return s;
}

/* Gives what we create to the default user (see the top of this file). */
static void own(int dirfd, const char *path, int flags)
{
        const GuestUser *u = guest_default_user();
        if (u->uid != 0)
                (void)fchownat(dirfd, path, u->uid, u->gid, flags);
}

static void fown(int fd)
{
        const GuestUser *u = guest_default_user();
        if (u->uid != 0)
                (void)fchown(fd, u->uid, u->gid);
}

/* ---- replies ---- */

static void send_result(uint32_t stream, Sbx__V1__Guest__Result *res)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        f.stream = stream;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_RESULT;
        f.result = res;
        guest_send(&f);
}

static void fail(uint32_t stream, int e, const char *what, const char *path)
{
        guest_send_result(stream, -e, "%s %s: %s", what, path ? path : "", strerror(e));
}

static Sbx__V1__FileType type_of(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFREG:
                return SBX__V1__FILE_TYPE__FILE_TYPE_REGULAR;
        case S_IFDIR:
                return SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY;
        case S_IFLNK:
                return SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK;
        case S_IFBLK:
                return SBX__V1__FILE_TYPE__FILE_TYPE_BLOCK_DEVICE;
        case S_IFCHR:
                return SBX__V1__FILE_TYPE__FILE_TYPE_CHAR_DEVICE;
        case S_IFIFO:
                return SBX__V1__FILE_TYPE__FILE_TYPE_FIFO;
        case S_IFSOCK:
                return SBX__V1__FILE_TYPE__FILE_TYPE_SOCKET;
        default:
                return SBX__V1__FILE_TYPE__FILE_TYPE_UNKNOWN;
        }
}

static int64_t ns(struct statx_timestamp t)
{
        return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void fill_info(const struct statx *st, Sbx__V1__FileInfo *fi)
{
        sbx__v1__file_info__init(fi);
        fi->type = type_of(st->stx_mode);
        fi->size = st->stx_size;
        fi->mode = st->stx_mode;
        fi->dev = makedev(st->stx_dev_major, st->stx_dev_minor);
        fi->ino = st->stx_ino;
        fi->nlink = st->stx_nlink;
        fi->uid = st->stx_uid;
        fi->gid = st->stx_gid;
        fi->rdev = makedev(st->stx_rdev_major, st->stx_rdev_minor);
        fi->blksize = st->stx_blksize;
        fi->blocks = st->stx_blocks;
        fi->atime_ns = ns(st->stx_atime);
        fi->mtime_ns = ns(st->stx_mtime);
        fi->ctime_ns = ns(st->stx_ctime);
        fi->birthtime_ns = (st->stx_mask & STATX_BTIME) ? ns(st->stx_btime) : 0;
}

static void reply_info(uint32_t stream, int dirfd, const char *path, int flags)
{
        Sbx__V1__Guest__Result res = SBX__V1__GUEST__RESULT__INIT;
        Sbx__V1__FileInfo fi;
        struct statx st;

        if (statx(dirfd, path, flags, STATX_BASIC_STATS | STATX_BTIME, &st) < 0) {
                fail(stream, errno, "stat", path);
                return;
        }
        fill_info(&st, &fi);
        res.payload_case = SBX__V1__GUEST__RESULT__PAYLOAD_INFO;
        res.info = &fi;
        send_result(stream, &res);
}

static void reply_path(uint32_t stream, const char *path)
{
        Sbx__V1__Guest__Result res = SBX__V1__GUEST__RESULT__INIT;
        res.payload_case = SBX__V1__GUEST__RESULT__PAYLOAD_PATH;
        res.path = (char *)path;
        send_result(stream, &res);
}

static void reply_ok(uint32_t stream, int r, const char *what, const char *path)
{
        if (r < 0)
                fail(stream, errno, what, path);
        else
                guest_send_result(stream, 0, NULL);
}

/* ---- simple operations ---- */

static int mkdir_parents(const char *path, mode_t mode)
{
        char buf[PATH_MAX];
        if (strlen(path) >= sizeof(buf)) {
                errno = ENAMETOOLONG;
                return -1;
        }
        snprintf(buf, sizeof(buf), "%s", path);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, mode) == 0)
                        own(AT_FDCWD, buf, 0);
                else if (errno != EEXIST)
                        return -1;
                *p = '/';
        }
        if (mkdir(buf, mode) == 0) {
                own(AT_FDCWD, buf, 0);
                return 0;
        }
        if (errno == EEXIST) {
                struct stat st;
                if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
                        return 0;
                errno = ENOTDIR;
        }
        return -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path) < 0 ? -1 : 0;
}

static void do_remove(uint32_t stream, const Sbx__V1__RemoveRequest *q)
{
        struct stat st;
        if (lstat(q->path, &st) < 0) {
                fail(stream, errno, "remove", q->path);
                return;
        }
        if (S_ISDIR(st.st_mode) && q->recursive) {
                reply_ok(stream, nftw(q->path, rm_entry, 32, FTW_DEPTH | FTW_PHYS), "remove", q->path);
                return;
        }
        reply_ok(stream, remove(q->path), "remove", q->path);
}

static void do_read_dir(uint32_t stream, const char *path)
{
        Sbx__V1__Guest__Result res = SBX__V1__GUEST__RESULT__INIT;
        Sbx__V1__ReadDirResponse dir = SBX__V1__READ_DIR_RESPONSE__INIT;
        DIR *d = opendir(path);
        struct dirent *de;
        size_t n = 0, cap = 64;
        Sbx__V1__DirEntry *items = NULL, **ptrs = NULL;

        if (!d) {
                fail(stream, errno, "readdir", path);
                return;
        }
        items = calloc(cap, sizeof(*items));
        while (items && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (n == READDIR_MAX)
                        break;
                if (n == cap) {
                        Sbx__V1__DirEntry *more = realloc(items, 2 * cap * sizeof(*items));
                        if (!more)
                                break;
                        items = more;
                        cap *= 2;
                }
                sbx__v1__dir_entry__init(&items[n]);
                items[n].name = strdup(de->d_name);
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        items[n].type = type_of(st.st_mode);
                n++;
        }
        ptrs = calloc(n + 1, sizeof(*ptrs));
        for (size_t i = 0; ptrs && i < n; i++)
                ptrs[i] = &items[i];
        dir.entries = ptrs;
        dir.n_entries = ptrs ? n : 0;
        res.payload_case = SBX__V1__GUEST__RESULT__PAYLOAD_DIR;
        res.dir = &dir;
        if (sbx__v1__guest__result__get_packed_size(&res) > SBX_FRAME_MAX - 64)
                guest_send_result(stream, -EFBIG,
                                  "directory %s has too many entries for one reply; walk it instead", path);
        else
                send_result(stream, &res);
        for (size_t i = 0; items && i < n; i++)
                free(items[i].name);
        free(items);
        free(ptrs);
        closedir(d);
}

static void do_copy(uint32_t stream, const Sbx__V1__CopyFileRequest *q)
{
        _cleanup_close_ int in = open(q->from_path, O_RDONLY | O_CLOEXEC);
        struct stat st;

        if (in < 0 || fstat(in, &st) < 0) {
                fail(stream, errno, "copy", q->from_path);
                return;
        }
        _cleanup_close_ int out =
                open(q->to_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 07777);
        if (out < 0) {
                fail(stream, errno, "copy to", q->to_path);
                return;
        }
        fown(out);
        for (;;) {
                ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
                if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS)) {
                        char buf[65536];
                        n = read(in, buf, sizeof(buf));
                        if (n > 0 && sbx_write_full(out, buf, (size_t)n) < 0)
                                n = -1;
                }
                if (n < 0) {
                        fail(stream, errno, "copy", q->from_path);
                        return;
                }
                if (n == 0)
                        break;
        }
        guest_send_result(stream, 0, NULL);
}

static void do_make_temp(uint32_t stream, const Sbx__V1__MakeTempRequest *q)
{
        char path[PATH_MAX];
        const char *dir = isempty(q->dir) ? "/tmp" : q->dir;
        const char *suffix = q->suffix ? q->suffix : "";
        int r;

        if (strchr(strempty(q->prefix), '/') || strchr(suffix, '/')) {
                guest_send_result(stream, -EINVAL, "prefix and suffix may not contain '/'");
                return;
        }
        r = snprintf(path, sizeof(path), "%s/%sXXXXXX%s", dir, strempty(q->prefix), suffix);
        if (r < 0 || (size_t)r >= sizeof(path)) {
                guest_send_result(stream, -ENAMETOOLONG, "temporary path too long");
                return;
        }
        if (q->directory) {
                if (*suffix) {
                        guest_send_result(stream, -EINVAL, "suffix: not supported for directories");
                        return;
                }
                if (!mkdtemp(path)) {
                        fail(stream, errno, "mkdtemp in", dir);
                        return;
                }
                own(AT_FDCWD, path, 0);
        } else {
                int fd = mkstemps(path, (int)strlen(suffix));
                if (fd < 0) {
                        fail(stream, errno, "mkstemp in", dir);
                        return;
                }
                fown(fd);
                close(fd);
        }
        reply_path(stream, path);
}

static void do_umask(uint32_t stream, const Sbx__V1__UmaskRequest *q)
{
        Sbx__V1__Guest__Result res = SBX__V1__GUEST__RESULT__INIT;
        mode_t old = umask(q->set ? (mode_t)(q->mask & 0777) : 022);
        if (!q->set)
                umask(old);
        res.payload_case = SBX__V1__GUEST__RESULT__PAYLOAD_PREVIOUS_UMASK;
        res.previous_umask = old;
        send_result(stream, &res);
}

static struct timespec to_ts(int64_t t)
{
        return (struct timespec){ .tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL };
}

/* ---- reads ---- */

static void send_data(uint32_t stream, const uint8_t *p, size_t n)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        f.stream = stream;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_DATA;
        f.data.data = (uint8_t *)p;
        f.data.len = n;
        guest_send(&f);
}

static void read_pump(FileStream *s)
{
        uint8_t buf[SBX_FRAME_CHUNK];

        while (s->credit > 0 && guest_channel_writable()) {
                size_t want = SBX_MIN((size_t)s->credit, sizeof(buf));
                if (s->left != UINT64_MAX)
                        want = SBX_MIN(want, (size_t)SBX_MIN(s->left, (uint64_t)sizeof(buf)));
                if (want == 0)
                        goto done;
                ssize_t n = read(s->fd, buf, want);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        fail(s->stream, errno, "read", "");
                        stream_free(s);
                        return;
                }
                if (n == 0)
                        goto done;
                send_data(s->stream, buf, (size_t)n);
                s->credit -= (uint32_t)n;
                if (s->left != UINT64_MAX)
                        s->left -= (uint64_t)n;
        }
        return;
done:
        guest_send_result(s->stream, 0, NULL);
        stream_free(s);
}

static void do_read_file(uint32_t stream, const Sbx__V1__ReadFileRequest *q)
{
        int fd = open(q->path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        FileStream *s;

        if (fd < 0) {
                fail(stream, errno, "open", q->path);
                return;
        }
        if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
                close(fd);
                fail(stream, EISDIR, "read", q->path);
                return;
        }
        if (q->offset && lseek(fd, (off_t)q->offset, SEEK_SET) < 0) {
                fail(stream, errno, "seek", q->path);
                close(fd);
                return;
        }
        s = stream_new(stream, FILE_READ);
        if (!s) {
                close(fd);
                guest_send_result(stream, -ENOMEM, "out of memory");
                return;
        }
        s->fd = fd;
        s->left = q->length ? q->length : UINT64_MAX;
        read_pump(s);
}

/* ---- writes ---- */

static void do_write_file(uint32_t stream, const Sbx__V1__WriteFileHeader *h)
{
        int flags = O_WRONLY | O_CLOEXEC | (h->append ? O_APPEND : O_TRUNC);
        mode_t mode = h->mode ? (mode_t)(h->mode & 07777) : 0644;
        struct stat st;
        FileStream *s;

        if (!h->no_create)
                flags |= O_CREAT;
        if (h->create_new)
                flags |= O_CREAT | O_EXCL;
        if (h->make_parents) {
                char dir[PATH_MAX];
                snprintf(dir, sizeof(dir), "%s", h->path);
                char *slash = strrchr(dir, '/');
                if (slash && slash != dir) {
                        *slash = '\0';
                        if (mkdir_parents(dir, 0755) < 0) {
                                fail(stream, errno, "mkdir", dir);
                                return;
                        }
                }
        }
        bool existed = stat(h->path, &st) == 0;
        int fd = open(h->path, flags, mode);
        if (fd < 0) {
                fail(stream, errno, "open", h->path);
                return;
        }
        if (!existed)
                fown(fd);
        s = stream_new(stream, FILE_WRITE);
        if (!s) {
                close(fd);
                guest_send_result(stream, -ENOMEM, "out of memory");
                return;
        }
        s->fd = fd;
        /* No reply yet: data frames follow, then end; the Result carries the byte count. */
}

static void write_data(FileStream *s, const uint8_t *p, size_t n)
{
        if (s->fd >= 0 && sbx_write_full(s->fd, p, n) < 0) {
                int e = errno;
                close(s->fd);
                s->fd = -1;
                fail(s->stream, e, "write", "");
                /* Keep the stream until end/reset so later data is swallowed quietly. */
                s->kind = FILE_WRITE;
                s->written = UINT64_MAX;
        } else if (s->written != UINT64_MAX) {
                s->written += n;
        }
        s->returned += (uint32_t)n;
        if (s->returned >= 65536) {
                guest_send_credit(s->stream, s->returned);
                s->returned = 0;
        }
}

static void write_end(FileStream *s)
{
        if (s->written != UINT64_MAX) {
                Sbx__V1__Guest__Result res = SBX__V1__GUEST__RESULT__INIT;
                if (fsync(s->fd) < 0 && errno != EINVAL) {
                        fail(s->stream, errno, "fsync", "");
                } else {
                        res.payload_case = SBX__V1__GUEST__RESULT__PAYLOAD_BYTES_WRITTEN;
                        res.bytes_written = s->written;
                        send_result(s->stream, &res);
                }
        }
        stream_free(s);
}

/* ---- walks ---- */

static void send_entry(FileStream *s, const char *path, Sbx__V1__FileType type, unsigned depth)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        Sbx__V1__WalkEntry e = SBX__V1__WALK_ENTRY__INIT;
        e.path = (char *)path;
        e.type = type;
        e.depth = depth;
        f.stream = s->stream;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_WALK_ENTRY;
        f.walk_entry = &e;
        guest_send(&f);
        s->credit = s->credit > 64 + strlen(path) ? s->credit - (uint32_t)(64 + strlen(path)) : 0;
}

static int walk_push(FileStream *s, const char *rel, unsigned depth)
{
        char full[PATH_MAX];
        snprintf(full, sizeof(full), "%s%s%s", s->root, *rel ? "/" : "", rel);
        DIR *d = opendir(full);
        if (!d)
                return -errno;
        WalkDir *st = realloc(s->stack, (s->depth + 1) * sizeof(WalkDir));
        if (!st) {
                closedir(d);
                return -ENOMEM;
        }
        s->stack = st;
        s->stack[s->depth++] = (WalkDir){ .d = d, .path = strdup(rel), .depth = depth };
        return 0;
}

static void walk_pump(FileStream *s)
{
        while (s->depth > 0 && s->credit > 0 && guest_channel_writable()) {
                WalkDir *top = &s->stack[s->depth - 1];
                struct dirent *de = readdir(top->d);
                if (!de) {
                        closedir(top->d);
                        free(top->path);
                        s->depth--;
                        continue;
                }
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                char rel[PATH_MAX];
                snprintf(rel, sizeof(rel), "%s%s%s", top->path, *top->path ? "/" : "", de->d_name);
                struct stat st;
                int flags = s->follow ? 0 : AT_SYMLINK_NOFOLLOW;
                if (fstatat(dirfd(top->d), de->d_name, &st, flags) < 0 &&
                    fstatat(dirfd(top->d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                unsigned depth = top->depth + 1;
                send_entry(s, rel, type_of(st.st_mode), depth);
                if (S_ISDIR(st.st_mode) && (s->max_depth == 0 || depth < s->max_depth) &&
                    depth < WALK_DEPTH_MAX)
                        (void)walk_push(s, rel, depth);
        }
        if (s->depth == 0) {
                guest_send_result(s->stream, 0, NULL);
                stream_free(s);
        }
}

static void do_walk(uint32_t stream, const Sbx__V1__WalkRequest *q)
{
        struct stat st;
        FileStream *s;
        const char *root = isempty(q->root) ? "." : q->root;

        if ((q->follow_symlinks ? stat(root, &st) : lstat(root, &st)) < 0) {
                fail(stream, errno, "walk", root);
                return;
        }
        s = stream_new(stream, FILE_WALK);
        if (!s || !(s->root = strdup(root))) {
                if (s)
                        stream_free(s);
                guest_send_result(stream, -ENOMEM, "out of memory");
                return;
        }
        s->max_depth = q->max_depth;
        s->follow = q->follow_symlinks;
        send_entry(s, "", type_of(st.st_mode), 0);
        if (S_ISDIR(st.st_mode) && q->max_depth != 1 && walk_push(s, "", 0) < 0) {
                fail(stream, errno, "walk", root);
                stream_free(s);
                return;
        }
        walk_pump(s);
}

/* ---- file handles ---- */

static void handle_reply(uint32_t stream, Sbx__V1__FileOpResult *r)
{
        Sbx__V1__Guest__Result res = SBX__V1__GUEST__RESULT__INIT;
        res.payload_case = SBX__V1__GUEST__RESULT__PAYLOAD_FILE_OP;
        res.file_op = r;
        send_result(stream, &res);
}

static void handle_error(uint32_t stream, int e)
{
        Sbx__V1__FileOpResult r = SBX__V1__FILE_OP_RESULT__INIT;
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", strerror(e));
        r.error_status = guest_status_of_errno(e);
        r.error_message = msg;
        handle_reply(stream, &r);
}

static void do_open(uint32_t stream, const Sbx__V1__FileOpen *o)
{
        Sbx__V1__FileOpResult r = SBX__V1__FILE_OP_RESULT__INIT;
        int flags = O_CLOEXEC;
        struct stat st;
        FileStream *s;

        if (o->write || o->append)
                flags |= o->read ? O_RDWR : O_WRONLY;
        else
                flags |= O_RDONLY;
        if (o->append)
                flags |= O_APPEND;
        if (o->truncate)
                flags |= O_TRUNC;
        if (o->create)
                flags |= O_CREAT;
        if (o->create_new)
                flags |= O_CREAT | O_EXCL;
        bool existed = stat(o->path, &st) == 0;
        int fd = open(o->path, flags, o->mode ? (mode_t)(o->mode & 07777) : 0644);
        if (fd < 0) {
                fail(stream, errno, "open", o->path);
                return;
        }
        if (!existed)
                fown(fd);
        s = stream_new(stream, FILE_HANDLE);
        if (!s) {
                close(fd);
                guest_send_result(stream, -ENOMEM, "out of memory");
                return;
        }
        s->fd = fd;
        r.result_case = SBX__V1__FILE_OP_RESULT__RESULT_DONE;
        r.done = true;
        handle_reply(stream, &r);
}

static void handle_op(FileStream *s, const Sbx__V1__FileOp *op)
{
        Sbx__V1__FileOpResult r = SBX__V1__FILE_OP_RESULT__INIT;
        Sbx__V1__FileInfo fi;
        struct statx st;
        uint8_t *buf = NULL;

        switch (op->op_case) {
        case SBX__V1__FILE_OP__OP_READ: {
                size_t len = SBX_MIN((size_t)op->read->length, (size_t)SBX_FRAME_MAX / 2);
                buf = malloc(len ? len : 1);
                ssize_t n = buf ? read(s->fd, buf, len) : -1;
                if (n < 0) {
                        handle_error(s->stream, buf ? errno : ENOMEM);
                        free(buf);
                        return;
                }
                r.result_case = SBX__V1__FILE_OP_RESULT__RESULT_DATA;
                r.data.data = buf;
                r.data.len = (size_t)n;
                r.eof = n == 0 && len > 0;
                break;
        }
        case SBX__V1__FILE_OP__OP_WRITE: {
                ssize_t n = write(s->fd, op->write.data, op->write.len);
                if (n < 0) {
                        handle_error(s->stream, errno);
                        return;
                }
                r.result_case = SBX__V1__FILE_OP_RESULT__RESULT_BYTES_WRITTEN;
                r.bytes_written = (uint64_t)n;
                break;
        }
        case SBX__V1__FILE_OP__OP_SEEK: {
                off_t pos = lseek(s->fd, (off_t)op->seek->offset, (int)op->seek->whence);
                if (pos < 0 || op->seek->whence > 2) {
                        handle_error(s->stream, pos < 0 ? errno : EINVAL);
                        return;
                }
                r.result_case = SBX__V1__FILE_OP_RESULT__RESULT_POSITION;
                r.position = (uint64_t)pos;
                break;
        }
        case SBX__V1__FILE_OP__OP_STAT:
                if (statx(s->fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME, &st) < 0) {
                        handle_error(s->stream, errno);
                        return;
                }
                fill_info(&st, &fi);
                r.result_case = SBX__V1__FILE_OP_RESULT__RESULT_INFO;
                r.info = &fi;
                break;
        case SBX__V1__FILE_OP__OP_TRUNCATE:
                if (ftruncate(s->fd, (off_t)op->truncate->length) < 0) {
                        handle_error(s->stream, errno);
                        return;
                }
                r.result_case = SBX__V1__FILE_OP_RESULT__RESULT_DONE;
                r.done = true;
                break;
        case SBX__V1__FILE_OP__OP_SYNC:
        case SBX__V1__FILE_OP__OP_SYNC_DATA:
                if ((op->op_case == SBX__V1__FILE_OP__OP_SYNC ? fsync(s->fd) : fdatasync(s->fd)) < 0) {
                        handle_error(s->stream, errno);
                        return;
                }
                r.result_case = SBX__V1__FILE_OP_RESULT__RESULT_DONE;
                r.done = true;
                break;
        case SBX__V1__FILE_OP__OP_UTIME: {
                struct timespec ts[2] = { to_ts(op->utime->atime_ns), to_ts(op->utime->mtime_ns) };
                if (futimens(s->fd, ts) < 0) {
                        handle_error(s->stream, errno);
                        return;
                }
                r.result_case = SBX__V1__FILE_OP_RESULT__RESULT_DONE;
                r.done = true;
                break;
        }
        case SBX__V1__FILE_OP__OP_LOCK:
        case SBX__V1__FILE_OP__OP_UNLOCK: {
                /* Non-blocking: one loop serves every client, and it must not stall on a lock. */
                int how = op->op_case == SBX__V1__FILE_OP__OP_UNLOCK ? LOCK_UN
                          : op->lock->exclusive                      ? LOCK_EX | LOCK_NB
                                                                     : LOCK_SH | LOCK_NB;
                if (flock(s->fd, how) < 0) {
                        handle_error(s->stream, errno);
                        return;
                }
                r.result_case = SBX__V1__FILE_OP_RESULT__RESULT_DONE;
                r.done = true;
                break;
        }
        default:
                handle_error(s->stream, EINVAL);
                return;
        }
        handle_reply(s->stream, &r);
        free(buf);
}

/* ---- dispatch ---- */

void guest_fs_request(uint32_t stream, const Sbx__V1__Guest__FsRequest *r)
{
        struct timespec ts[2];

        if (find(stream)) {
                guest_send_result(stream, -EEXIST, "stream %u is already in use", stream);
                return;
        }
        switch (r->op_case) {
        case SBX__V1__GUEST__FS_REQUEST__OP_STAT:
                reply_info(stream, AT_FDCWD, r->stat->path,
                           r->stat->follow_symlinks ? 0 : AT_SYMLINK_NOFOLLOW);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_READ_DIR:
                do_read_dir(stream, r->read_dir->path);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_MAKE_DIR: {
                mode_t mode = r->make_dir->mode ? (mode_t)(r->make_dir->mode & 07777) : 0755;
                if (r->make_dir->recursive) {
                        reply_ok(stream, mkdir_parents(r->make_dir->path, mode), "mkdir", r->make_dir->path);
                } else {
                        int k = mkdir(r->make_dir->path, mode);
                        if (k == 0)
                                own(AT_FDCWD, r->make_dir->path, 0);
                        reply_ok(stream, k, "mkdir", r->make_dir->path);
                }
                return;
        }
        case SBX__V1__GUEST__FS_REQUEST__OP_REMOVE:
                do_remove(stream, r->remove);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_RENAME:
                reply_ok(stream, rename(r->rename->old_path, r->rename->new_path), "rename",
                         r->rename->old_path);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_COPY_FILE:
                do_copy(stream, r->copy_file);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_CHMOD:
                reply_ok(stream, chmod(r->chmod->path, (mode_t)(r->chmod->mode & 07777)), "chmod",
                         r->chmod->path);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_CHOWN:
                reply_ok(stream,
                         lchown(r->chown->path, r->chown->uid < 0 ? (uid_t)-1 : (uid_t)r->chown->uid,
                                r->chown->gid < 0 ? (gid_t)-1 : (gid_t)r->chown->gid),
                         "chown", r->chown->path);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_LINK: {
                int k = r->link->symbolic ? symlink(r->link->target, r->link->path)
                                          : link(r->link->target, r->link->path);
                if (k == 0)
                        own(AT_FDCWD, r->link->path, AT_SYMLINK_NOFOLLOW);
                reply_ok(stream, k, "link", r->link->path);
                return;
        }
        case SBX__V1__GUEST__FS_REQUEST__OP_READ_LINK: {
                char buf[PATH_MAX];
                ssize_t n = readlink(r->read_link->path, buf, sizeof(buf) - 1);
                if (n < 0) {
                        fail(stream, errno, "readlink", r->read_link->path);
                        return;
                }
                buf[n] = '\0';
                reply_path(stream, buf);
                return;
        }
        case SBX__V1__GUEST__FS_REQUEST__OP_REAL_PATH: {
                char buf[PATH_MAX];
                if (!realpath(r->real_path->path, buf)) {
                        fail(stream, errno, "realpath", r->real_path->path);
                        return;
                }
                reply_path(stream, buf);
                return;
        }
        case SBX__V1__GUEST__FS_REQUEST__OP_TRUNCATE:
                reply_ok(stream, truncate(r->truncate->path, (off_t)r->truncate->length), "truncate",
                         r->truncate->path);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_UTIME:
                ts[0] = to_ts(r->utime->atime_ns);
                ts[1] = to_ts(r->utime->mtime_ns);
                reply_ok(stream, utimensat(AT_FDCWD, r->utime->path, ts, 0), "utime", r->utime->path);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_MAKE_TEMP:
                do_make_temp(stream, r->make_temp);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_UMASK:
                do_umask(stream, r->umask);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_READ_FILE:
                do_read_file(stream, r->read_file);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_WRITE_FILE:
                do_write_file(stream, r->write_file);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_WALK:
                do_walk(stream, r->walk);
                return;
        case SBX__V1__GUEST__FS_REQUEST__OP_OPEN:
                do_open(stream, r->open);
                return;
        default:
                guest_send_result(stream, -EOPNOTSUPP, "unknown file operation");
                return;
        }
}

bool guest_fs_frame(const Sbx__V1__Guest__GuestFrame *f)
{
        FileStream *s = find(f->stream);

        if (!s)
                return false;
        switch (f->body_case) {
        case SBX__V1__GUEST__GUEST_FRAME__BODY_DATA:
                if (s->kind == FILE_WRITE)
                        write_data(s, f->data.data, f->data.len);
                return true;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_END:
                if (s->kind == FILE_WRITE)
                        write_end(s);
                else
                        stream_free(s);
                return true;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_CREDIT:
                s->credit += f->credit;
                if (s->kind == FILE_READ)
                        read_pump(s);
                else if (s->kind == FILE_WALK)
                        walk_pump(s);
                return true;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_FILE_OP:
                if (s->kind == FILE_HANDLE)
                        handle_op(s, f->file_op);
                return true;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_RESET:
                stream_free(s);
                return true;
        default:
                return true;
        }
}

void guest_fs_resume(void)
{
        for (FileStream *s = streams, *next; s; s = next) {
                next = s->next;
                if (s->kind == FILE_READ)
                        read_pump(s);
                else if (s->kind == FILE_WALK)
                        walk_pump(s);
        }
}
