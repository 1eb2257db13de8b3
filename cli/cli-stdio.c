/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local end of the streaming commands (exec, cp): reading an fd and writing fds without
 * blocking the loop, which must stay free to serve the call, Ctrl-C and window changes while bytes
 * wait.
 *
 * Reading: a terminal or a pipe is polled through libuv's stream handles; a regular file cannot be
 * polled (epoll refuses it), so it is read in the thread pool, where a read never waits long.
 * libuv takes over the fd it is given (it sets O_NONBLOCK and closes it with the handle), so it
 * gets a duplicate, and the flags of the caller's fd are put back at the end: a pipe's read end
 * may be shared with the shell that started us. For a terminal libuv reopens the device, which
 * keeps O_NONBLOCK away from the other processes on it.
 *
 * Writing: every write goes through the thread pool as a plain blocking write(2), one at a time so
 * the order across stdout and stderr is the order of arrival.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "cli/cli.h"

/* ---- input ---- */

struct CliInput {
        uv_loop_t *loop;
        CliInputCallback cb;
        void *userdata;
        void (*done)(void *userdata);
        void *done_userdata;

        /* The caller's fd, its status flags before libuv saw it (-1: unknown), and the duplicate
         * handed to libuv (-1 for files, which are read through the caller's fd). */
        int fd;
        int saved_flags;
        int dup_fd;

        bool stream;
        union {
                uv_handle_t handle;
                uv_stream_t s;
                uv_tty_t tty;
                uv_pipe_t pipe;
        } h;
        uv_fs_t req;
        bool req_active;

        bool paused, ended, closing, raw, dispatching;
        char buf[CLI_CHUNK];
};

static void input_free(CliInput *in)
{
        void (*done)(void *) = in->done;
        void *ud = in->done_userdata;

        if (in->saved_flags >= 0)
                (void)fcntl(in->fd, F_SETFL, in->saved_flags);
        free(in);
        if (done)
                done(ud);
}

static void input_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        CliInput *in = h->data;

        /* One read is outstanding at a time and is handed on before the next: one buffer will do. */
        *buf = uv_buf_init(in->buf, sizeof(in->buf));
}

static void input_end(CliInput *in, int error)
{
        in->ended = true;
        if (in->stream)
                uv_read_stop(&in->h.s);
        in->cb(in, NULL, 0, error, in->userdata);
}

static void input_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        CliInput *in = s->data;

        if (in->closing || in->ended)
                return;
        if (n > 0)
                in->cb(in, buf->base, (size_t)n, 0, in->userdata);
        else if (n == UV_EOF)
                input_end(in, 0);
        else if (n < 0)
                input_end(in, (int)n);
}

static int input_read_file(CliInput *in);

static void input_on_fs_read(uv_fs_t *req)
{
        CliInput *in = req->data;
        ssize_t n = req->result;

        in->req_active = false;
        uv_fs_req_cleanup(req);
        if (!in->closing) {
                /* The callback may close the input: it is freed below, not under our feet. */
                in->dispatching = true;
                if (n > 0)
                        in->cb(in, in->buf, (size_t)n, 0, in->userdata);
                else
                        input_end(in, n < 0 ? (int)n : 0);
                in->dispatching = false;
        }
        if (in->closing) {
                input_free(in);
                return;
        }
        if (input_read_file(in) < 0)
                input_end(in, -EIO);
}

static int input_read_file(CliInput *in)
{
        uv_buf_t b = uv_buf_init(in->buf, sizeof(in->buf));
        int r;

        if (in->req_active || in->paused || in->ended || in->closing)
                return 0;
        in->req.data = in;
        /* Offset -1: read(2) at the current position, so stdin redirected from a file works too. */
        r = uv_fs_read(in->loop, &in->req, in->fd, &b, 1, -1, input_on_fs_read);
        if (r < 0)
                return r;
        in->req_active = true;
        return 0;
}

int cli_input_new(uv_loop_t *loop, int fd, CliInputCallback cb, void *userdata, CliInput **ret)
{
        uv_handle_type type = uv_guess_handle(fd);
        CliInput *in;
        int r;

        in = new0(CliInput, 1);
        if (!in)
                return -ENOMEM;
        in->loop = loop;
        in->cb = cb;
        in->userdata = userdata;
        in->fd = fd;
        in->saved_flags = -1;
        in->dup_fd = -1;
        if (type != UV_TTY && type != UV_NAMED_PIPE && type != UV_TCP) {
                /* Regular files, /dev/null and other character devices. */
                r = input_read_file(in);
                if (r < 0) {
                        free(in);
                        return r;
                }
                *ret = in;
                return 0;
        }

        in->saved_flags = fcntl(fd, F_GETFL);
        in->dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (in->dup_fd < 0) {
                free(in);
                return negative_errno();
        }
        if (type == UV_TTY) {
                /* On failure uv_tty_init() leaves no handle behind. */
                r = uv_tty_init(loop, &in->h.tty, in->dup_fd, 1);
                if (r < 0) {
                        close(in->dup_fd);
                        free(in);
                        return r;
                }
        } else {
                (void)uv_pipe_init(loop, &in->h.pipe, 0);
                r = uv_pipe_open(&in->h.pipe, in->dup_fd);
        }
        in->stream = true;
        in->h.handle.data = in;
        if (r == 0)
                r = uv_read_start(&in->h.s, input_alloc, input_on_read);
        if (r < 0) {
                /* The handle exists now, so it is released the way every handle is. */
                cli_input_close(in, NULL, NULL);
                return r;
        }
        *ret = in;
        return 0;
}

void cli_input_pause(CliInput *in, bool pause)
{
        if (in->closing || in->ended || in->paused == pause)
                return;
        in->paused = pause;
        if (!in->stream) {
                if (input_read_file(in) < 0)
                        input_end(in, -EIO);
        } else if (pause)
                uv_read_stop(&in->h.s);
        else
                (void)uv_read_start(&in->h.s, input_alloc, input_on_read);
}

int cli_input_set_raw(CliInput *in)
{
        int r;

        if (!in->stream || in->h.handle.type != UV_TTY)
                return -ENOTTY;
        r = uv_tty_set_mode(&in->h.tty, UV_TTY_MODE_RAW);
        if (r < 0)
                return r;
        in->raw = true;
        return 0;
}

static void input_on_close(uv_handle_t *h)
{
        CliInput *in = h->data;
        input_free(in);
}

void cli_input_close(CliInput *in, void (*done)(void *userdata), void *userdata)
{
        if (!in || in->closing)
                return;
        in->closing = true;
        in->done = done;
        in->done_userdata = userdata;
        if (!in->stream) {
                /* A read in the thread pool cannot be stopped once running; it ends soon on a
                 * file, and its callback frees the input. */
                if (in->req_active)
                        (void)uv_cancel((uv_req_t *)&in->req);
                else if (!in->dispatching)
                        input_free(in);
                return;
        }
        if (in->raw)
                (void)uv_tty_set_mode(&in->h.tty, UV_TTY_MODE_NORMAL);
        uv_read_stop(&in->h.s);
        /* libuv closes the fd the handle reads from: our duplicate, or for a reopened terminal
         * the new fd, which leaves the duplicate to us (as does a pipe libuv refused). */
        uv_os_fd_t handle_fd = -1;
        if (uv_fileno(&in->h.handle, &handle_fd) != 0 || handle_fd != in->dup_fd)
                close(in->dup_fd);
        uv_close(&in->h.handle, input_on_close);
}

/* ---- output ---- */

typedef struct Chunk {
        STAILQ_ENTRY(Chunk) link;
        int fd;
        size_t n;
        uint8_t data[];
} Chunk;

struct CliOutput {
        uv_loop_t *loop;
        STAILQ_HEAD(, Chunk) queue;
        size_t pending;
        /* The chunk being written in the thread pool, and the errno its write ended with. */
        Chunk *current;
        int current_error;
        uv_work_t work;
        int error, error_fd;
        bool closing;
        void (*on_drain)(CliOutput *o, void *userdata);
        void *drain_userdata;
        void (*done)(void *userdata);
        void *done_userdata;
};

static void output_drop_queue(CliOutput *o)
{
        Chunk *c;

        while ((c = STAILQ_FIRST(&o->queue))) {
                STAILQ_REMOVE_HEAD(&o->queue, link);
                o->pending -= c->n;
                free(c);
        }
}

static void output_free(CliOutput *o)
{
        void (*done)(void *) = o->done;
        void *ud = o->done_userdata;

        output_drop_queue(o);
        free(o);
        if (done)
                done(ud);
}

/* Runs in the thread pool: touches only the current chunk and current_error. */
static void output_work(uv_work_t *w)
{
        CliOutput *o = w->data;
        const Chunk *c = o->current;
        size_t off = 0;

        o->current_error = 0;
        while (off < c->n) {
                ssize_t k = write(c->fd, c->data + off, c->n - off);
                if (k > 0) {
                        off += (size_t)k;
                } else if (k < 0 && errno == EINTR) {
                        continue;
                } else if (k < 0 && errno == EAGAIN) {
                        /* Another process put the fd into non-blocking mode: wait for room. */
                        struct pollfd p = { .fd = c->fd, .events = POLLOUT };
                        (void)poll(&p, 1, -1);
                } else {
                        o->current_error = k < 0 ? errno : EIO;
                        return;
                }
        }
}

static void output_next(CliOutput *o);

static void output_after_work(uv_work_t *w, int status)
{
        CliOutput *o = w->data;
        Chunk *c = o->current;

        o->current = NULL;
        o->pending -= c->n;
        if (status == 0 && o->current_error != 0 && o->error == 0) {
                o->error = -o->current_error;
                o->error_fd = c->fd;
        }
        free(c);
        if (o->closing) {
                output_free(o);
                return;
        }
        if (o->error < 0)
                output_drop_queue(o);
        output_next(o);
        /* Last: the callback may close the output. */
        if (!o->current && o->on_drain)
                o->on_drain(o, o->drain_userdata);
}

static void output_next(CliOutput *o)
{
        if (o->current || o->error < 0 || STAILQ_EMPTY(&o->queue))
                return;
        o->current = STAILQ_FIRST(&o->queue);
        STAILQ_REMOVE_HEAD(&o->queue, link);
        o->work.data = o;
        int r = uv_queue_work(o->loop, &o->work, output_work, output_after_work);
        if (r < 0) {
                o->pending -= o->current->n;
                free(o->current);
                o->current = NULL;
                o->error = r;
                o->error_fd = -1;
                output_drop_queue(o);
        }
}

int cli_output_new(uv_loop_t *loop, CliOutput **ret)
{
        CliOutput *o = new0(CliOutput, 1);

        if (!o)
                return -ENOMEM;
        o->loop = loop;
        o->error_fd = -1;
        STAILQ_INIT(&o->queue);
        *ret = o;
        return 0;
}

int cli_output_write(CliOutput *o, int fd, const void *p, size_t n)
{
        Chunk *c;

        if (o->error < 0)
                return o->error;
        if (n == 0)
                return 0;
        c = malloc(sizeof(Chunk) + n);
        if (!c)
                return -ENOMEM;
        c->fd = fd;
        c->n = n;
        memcpy(c->data, p, n);
        STAILQ_INSERT_TAIL(&o->queue, c, link);
        o->pending += n;
        output_next(o);
        return o->error < 0 ? o->error : 0;
}

size_t cli_output_pending(const CliOutput *o)
{
        return o->pending;
}

void cli_output_on_drain(CliOutput *o, void (*cb)(CliOutput *o, void *userdata), void *userdata)
{
        o->on_drain = cb;
        o->drain_userdata = userdata;
}

int cli_output_error(const CliOutput *o, int *ret_fd)
{
        if (o->error < 0 && ret_fd)
                *ret_fd = o->error_fd;
        return o->error;
}

void cli_output_close(CliOutput *o, void (*done)(void *userdata), void *userdata)
{
        if (!o || o->closing)
                return;
        o->closing = true;
        o->done = done;
        o->done_userdata = userdata;
        output_drop_queue(o);
        if (o->current)
                (void)uv_cancel((uv_req_t *)&o->work);
        else
                output_free(o);
}
