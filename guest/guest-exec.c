/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Processes: spawn with pipes or a terminal, stream stdio under credit, deliver signals, report the
 * exit status (code, signal, OOM). Each process gets its own session (so signals reach the whole
 * process group) and its own cgroup (so an OOM kill is attributed to it exactly).
 *
 * Flow control: output is read from a process only while the agent has granted credit for its
 * stream and the channel has room; a process that writes faster than the client reads simply
 * blocks on its pipe. Stdin arrives within the credit we grant and is handed back as written.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/base/buffer.h"
#include "common/base/fd-util.h"
#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "common/base/time-util.h"
#include "common/log/log.h"
#include "guest/guest.h"

extern char **environ;

/* After the process exits, its pipes may stay open in children it left behind: wait this long. */
#define LINGER_USEC (2 * USEC_PER_SEC)
/* Stdin credit goes back to the agent in batches of at least this much. */
#define CREDIT_BATCH 32768u

typedef struct Proc Proc;

typedef struct Pipe {
        Proc *p;
        GuestWatch w;
        uint32_t fd_no; /* 1 stdout, 2 stderr */
        bool eof;
} Pipe;

struct Proc {
        Proc *next;
        uint32_t stream;
        pid_t pid;
        bool tty;
        Pipe out, err;
        GuestWatch in_w;
        SbxBuffer in_buf;
        bool in_close;
        uint32_t in_returned;
        uint32_t out_credit;
        bool exited;
        int wstatus;
        usec_t exited_at;
        char cgroup[64];
};

static Proc *procs;
static GuestWatch linger_watch = { .fd = -1 };

static Proc *find_stream(uint32_t stream)
{
        for (Proc *p = procs; p; p = p->next)
                if (p->stream == stream)
                        return p;
        return NULL;
}

static void unlink_proc(Proc *p)
{
        for (Proc **pp = &procs; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        return;
                }
}

static void close_pipe(Pipe *pp)
{
        if (pp->w.fd >= 0) {
                int fd = pp->w.fd;
                guest_watch_del(&pp->w);
                close(fd);
        }
        pp->eof = true;
}

static void close_stdin(Proc *p)
{
        if (p->in_w.fd >= 0) {
                int fd = p->in_w.fd;
                guest_watch_del(&p->in_w);
                /* With a terminal, stdin and stdout share the master: keep it for output. */
                if (!p->tty)
                        close(fd);
        }
}

static void proc_free(Proc *p)
{
        close_pipe(&p->out);
        close_pipe(&p->err);
        close_stdin(p);
        sbx_buffer_done(&p->in_buf);
        if (*p->cgroup)
                rmdir(p->cgroup);
        unlink_proc(p);
        free(p);
}

/* ---- OOM attribution ---- */

static void cgroup_setup(void)
{
        static bool done;
        if (done)
                return;
        done = true;
        /* Memory and pids accounting for the per-process groups below /sys/fs/cgroup/sbx. */
        (void)mkdir("/sys/fs/cgroup/sbx", 0755);
        int fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void)!write(fd, "+memory +pids", 13);
                close(fd);
        }
        fd = open("/sys/fs/cgroup/sbx/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void)!write(fd, "+memory +pids", 13);
                close(fd);
        }
}

static bool cgroup_oom(const Proc *p)
{
        char path[128];
        _cleanup_free_ char *text = NULL;

        if (!*p->cgroup)
                return false;
        snprintf(path, sizeof(path), "%s/memory.events", p->cgroup);
        if (sbx_read_file(path, 4096, &text, NULL) < 0)
                return false;
        const char *k = strstr(text, "oom_kill ");
        return k && strtoull(k + 9, NULL, 10) > 0;
}

/* ---- output ---- */

static void send_output(Proc *p, uint32_t fd_no, const uint8_t *data, size_t n)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        Sbx__V1__Guest__Output o = SBX__V1__GUEST__OUTPUT__INIT;

        o.fd = fd_no;
        o.data.data = (uint8_t *)data;
        o.data.len = n;
        f.stream = p->stream;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_OUTPUT;
        f.output = &o;
        guest_send(&f);
        p->out_credit -= (uint32_t)n;
}

static void maybe_finish(Proc *p);

/* Reads output while there is credit and room; otherwise stops watching until resumed. */
static void pump(Pipe *pp)
{
        Proc *p = pp->p;
        uint8_t buf[SBX_FRAME_CHUNK];

        while (pp->w.fd >= 0 && p->out_credit > 0 && guest_channel_writable()) {
                size_t want = SBX_MIN((size_t)p->out_credit, sizeof(buf));
                ssize_t n = read(pp->w.fd, buf, want);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        guest_watch_mod(&pp->w, EPOLLIN);
                        return;
                }
                if (n <= 0) {
                        /* EOF, or EIO on a terminal whose last writer is gone. */
                        close_pipe(pp);
                        maybe_finish(p);
                        return;
                }
                send_output(p, pp->fd_no, buf, (size_t)n);
        }
        if (pp->w.fd >= 0)
                guest_watch_mod(&pp->w, 0);
}

static void on_pipe(GuestWatch *w, uint32_t events)
{
        pump(container_of(w, Pipe, w));
}

/* ---- stdin ---- */

static void return_credit(Proc *p, bool force)
{
        if (p->in_returned >= CREDIT_BATCH || (force && p->in_returned > 0)) {
                guest_send_credit(p->stream, p->in_returned);
                p->in_returned = 0;
        }
}

static void write_stdin(Proc *p)
{
        while (p->in_w.fd >= 0 && sbx_buffer_size(&p->in_buf) > 0) {
                ssize_t n = write(p->in_w.fd, sbx_buffer_data(&p->in_buf), sbx_buffer_size(&p->in_buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        guest_watch_mod(&p->in_w, EPOLLOUT);
                        return;
                }
                if (n < 0) {
                        /* The process closed its stdin (EPIPE): drop what is left, keep the credit flowing.
                         */
                        p->in_returned += (uint32_t)sbx_buffer_size(&p->in_buf);
                        sbx_buffer_clear(&p->in_buf);
                        close_stdin(p);
                        break;
                }
                sbx_buffer_consume(&p->in_buf, (size_t)n);
                p->in_returned += (uint32_t)n;
        }
        if (p->in_w.fd >= 0)
                guest_watch_mod(&p->in_w, 0);
        return_credit(p, sbx_buffer_size(&p->in_buf) == 0);
        if (p->in_close && sbx_buffer_size(&p->in_buf) == 0)
                close_stdin(p);
}

static void on_stdin(GuestWatch *w, uint32_t events)
{
        write_stdin(container_of(w, Proc, in_w));
}

/* ---- exit ---- */

static void send_exit(Proc *p)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        Sbx__V1__Guest__Exit e = SBX__V1__GUEST__EXIT__INIT;
        char sig[32] = "";

        if (WIFEXITED(p->wstatus)) {
                e.code = WEXITSTATUS(p->wstatus);
        } else if (WIFSIGNALED(p->wstatus)) {
                int s = WTERMSIG(p->wstatus);
                const char *abbrev = sigabbrev_np(s);
                e.code = 128 + s;
                snprintf(sig, sizeof(sig), "SIG%s", abbrev ? abbrev : "UNKNOWN");
        }
        e.signal = sig;
        e.oom = cgroup_oom(p);
        f.stream = p->stream;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_EXIT;
        f.exit = &e;
        guest_send(&f);
}

static void maybe_finish(Proc *p)
{
        if (!p->exited || !p->out.eof || !p->err.eof)
                return;
        send_exit(p);
        proc_free(p);
}

static void on_linger(GuestWatch *w, uint32_t events)
{
        uint64_t ticks;
        bool any = false;

        (void)!read(w->fd, &ticks, sizeof(ticks));
        for (Proc *p = procs, *next; p; p = next) {
                next = p->next;
                if (!p->exited)
                        continue;
                if (sbx_now_monotonic() - p->exited_at < LINGER_USEC) {
                        any = true;
                        continue;
                }
                /* Descendants still hold the pipes: report the exit without waiting for them. */
                close_pipe(&p->out);
                close_pipe(&p->err);
                maybe_finish(p);
        }
        if (!any) {
                struct itimerspec off = { 0 };
                timerfd_settime(w->fd, 0, &off, NULL);
        }
}

static void arm_linger(void)
{
        struct itimerspec t = { .it_interval = { 0, 250000000 }, .it_value = { 0, 250000000 } };
        if (linger_watch.fd < 0) {
                int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
                if (fd < 0 || guest_watch_add(&linger_watch, fd, EPOLLIN, on_linger) < 0)
                        return;
        }
        timerfd_settime(linger_watch.fd, 0, &t, NULL);
}

void guest_exec_sigchld(void)
{
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                for (Proc *p = procs; p; p = p->next)
                        if (p->pid == pid && !p->exited) {
                                p->exited = true;
                                p->wstatus = status;
                                p->exited_at = sbx_now_monotonic();
                                /* Read what is left before deciding the streams are done; each step
                                 * may finish (and free) the process. */
                                uint32_t id = p->stream;
                                pump(&p->out);
                                if (find_stream(id) == p)
                                        pump(&p->err);
                                if (find_stream(id) == p) {
                                        maybe_finish(p);
                                        if (find_stream(id) == p)
                                                arm_linger();
                                }
                                break;
                        }
                /* Anything else is an orphan we adopted as PID 1: reaped, nothing to report. */
        }
}

/* ---- spawn ---- */

_noreturn_ static void child(const Sbx__V1__Guest__Spawn *s, char **argv, char **env, int in, int out,
                             int err, int tty_slave, int errpipe, const char *cgroup, const GuestUser *u,
                             const char *cwd)
{
        sigset_t all;
        int e;

        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int sig = 1; sig < NSIG; sig++)
                signal(sig, SIG_DFL);
        setsid();
        if (*cgroup) {
                char procs_path[96];
                snprintf(procs_path, sizeof(procs_path), "%s/cgroup.procs", cgroup);
                int fd = open(procs_path, O_WRONLY | O_CLOEXEC);
                if (fd >= 0) {
                        (void)!write(fd, "0", 1);
                        close(fd);
                }
        }
        /* sbx-init shields itself from the OOM killer; its children must not inherit that. */
        int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (adj >= 0) {
                (void)!write(adj, "0", 1);
                close(adj);
        }
        if (tty_slave >= 0)
                ioctl(tty_slave, TIOCSCTTY, 0);
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
                goto fail;
        for (int fd = 3; fd < 1024; fd++)
                if (fd != errpipe)
                        close(fd);
        if (u->uid != 0 || u->gid != 0) {
                if (setgroups(u->n_groups, u->groups) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
                        goto fail;
        }
        if (chdir(cwd) < 0)
                goto fail;
        /* execvp looks PATH up in our environment: make it the process's own. */
        environ = env;
        execvp(argv[0], argv);
fail:
        e = errno;
        (void)!write(errpipe, &e, sizeof(e));
        _exit(127);
}

static int make_pipe(int fds[2])
{
        return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

void guest_exec_spawn(uint32_t stream, const Sbx__V1__Guest__Spawn *s)
{
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char **argv = NULL;
        int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, ep[2] = { -1, -1 };
        int master = -1, slave = -1, null_fd = -1;
        GuestUser user;
        Proc *p;
        int r, e = 0;

        if (find_stream(stream)) {
                guest_send_result(stream, -EEXIST, "stream %u is already in use", stream);
                return;
        }
        if (s->n_argv == 0 || isempty(s->argv[0])) {
                guest_send_result(stream, -EINVAL, "command: empty");
                return;
        }
        if (isempty(s->user))
                user = *guest_default_user();
        else if (guest_user_find(s->user, &user) < 0) {
                guest_send_result(stream, -ESRCH, "user: no user \"%s\" in the sandbox", s->user);
                return;
        }
        argv = calloc(s->n_argv + 1, sizeof(char *));
        env = guest_env_build(s->env, s->n_env, s->clear_env);
        p = calloc(1, sizeof(Proc));
        if (!argv || !env || !p) {
                free(p);
                guest_send_result(stream, -ENOMEM, "out of memory");
                return;
        }
        memcpy(argv, s->argv, s->n_argv * sizeof(char *));
        const char *cwd = isempty(s->cwd) ? user.home : s->cwd;

        p->stream = stream;
        p->tty = s->tty;
        p->out.p = p->err.p = p;
        p->out.fd_no = 1;
        p->err.fd_no = 2;
        p->out.w.fd = p->err.w.fd = p->in_w.fd = -1;
        p->out_credit = SBX_CHANNEL_CREDIT;
        p->in_buf = (SbxBuffer)SBX_BUFFER_INIT;
        sbx_buffer_set_limit(&p->in_buf, SBX_CHANNEL_CREDIT);

        cgroup_setup();
        snprintf(p->cgroup, sizeof(p->cgroup), "/sys/fs/cgroup/sbx/s%u", stream);
        if (mkdir(p->cgroup, 0755) < 0 && errno != EEXIST)
                p->cgroup[0] = '\0';

        if ((r = make_pipe(ep)) < 0)
                goto fail;
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (s->tty) {
                master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
                if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
                        r = -errno;
                        goto fail;
                }
                slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
                if (slave < 0) {
                        r = -errno;
                        goto fail;
                }
                struct winsize ws = { .ws_row = (unsigned short)(s->rows ? s->rows : 24),
                                      .ws_col = (unsigned short)(s->cols ? s->cols : 80) };
                ioctl(master, TIOCSWINSZ, &ws);
        } else if ((s->stdin && (r = make_pipe(in)) < 0) || (s->stdout && (r = make_pipe(out)) < 0) ||
                   (s->stderr && (r = make_pipe(err)) < 0)) {
                goto fail;
        }

        pid_t pid = fork();
        if (pid < 0) {
                r = -errno;
                goto fail;
        }
        if (pid == 0) {
                if (s->tty)
                        child(s, argv, env, slave, slave, slave, slave, ep[1], p->cgroup, &user, cwd);
                child(s, argv, env, s->stdin ? in[0] : null_fd, s->stdout ? out[1] : null_fd,
                      s->stderr ? err[1] : null_fd, -1, ep[1], p->cgroup, &user, cwd);
        }
        p->pid = pid;
        close(ep[1]);
        ep[1] = -1;
        /* The exec either happened (EOF on the CLOEXEC pipe) or failed (errno written). */
        while (read(ep[0], &e, sizeof(e)) < 0 && errno == EINTR)
                ;
        close(ep[0]);
        ep[0] = -1;
        if (e != 0) {
                waitpid(pid, NULL, 0);
                r = -e;
                goto fail;
        }

        if (s->tty) {
                close(slave);
                sbx_fd_nonblock(master, true);
                p->out.w.fd = -1;
                guest_watch_add(&p->out.w, master, 0, on_pipe);
                p->err.eof = true;
                p->err.w.fd = -1;
                p->in_w.fd = -1;
                /* The master is shared: stdin writes go through a second watch on a dup. */
                int dup_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
                if (dup_fd >= 0)
                        guest_watch_add(&p->in_w, dup_fd, 0, on_stdin);
                p->tty = false; /* the dup is ours to close */
                master = -1;
        } else {
                p->out.w.fd = p->err.w.fd = p->in_w.fd = -1;
                if (s->stdout) {
                        close(out[1]);
                        sbx_fd_nonblock(out[0], true);
                        guest_watch_add(&p->out.w, out[0], 0, on_pipe);
                } else {
                        p->out.eof = true;
                }
                if (s->stderr) {
                        close(err[1]);
                        sbx_fd_nonblock(err[0], true);
                        guest_watch_add(&p->err.w, err[0], 0, on_pipe);
                } else {
                        p->err.eof = true;
                }
                if (s->stdin) {
                        close(in[0]);
                        sbx_fd_nonblock(in[1], true);
                        guest_watch_add(&p->in_w, in[1], 0, on_stdin);
                }
        }
        if (null_fd >= 0)
                close(null_fd);
        p->next = procs;
        procs = p;

        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        Sbx__V1__Guest__Spawned sp = SBX__V1__GUEST__SPAWNED__INIT;
        sp.pid = (uint32_t)pid;
        f.stream = stream;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_SPAWNED;
        f.spawned = &sp;
        guest_send(&f);
        pump(&p->out);
        if (find_stream(stream) == p)
                pump(&p->err);
        return;

fail:
        for (int i = 0; i < 2; i++) {
                if (in[i] >= 0)
                        close(in[i]);
                if (out[i] >= 0)
                        close(out[i]);
                if (err[i] >= 0)
                        close(err[i]);
                if (ep[i] >= 0)
                        close(ep[i]);
        }
        if (master >= 0)
                close(master);
        if (slave >= 0)
                close(slave);
        if (null_fd >= 0)
                close(null_fd);
        if (*p->cgroup)
                rmdir(p->cgroup);
        sbx_buffer_done(&p->in_buf);
        free(p);
        if (r == -ENOENT)
                guest_send_result(stream, r, "command not found: %s", s->argv[0]);
        else if (r == -EACCES)
                guest_send_result(stream, r, "permission denied: %s", s->argv[0]);
        else
                guest_send_result(stream, r, "cannot run %s: %s", s->argv[0], strerror(-r));
}

/* ---- frames for running processes ---- */

void guest_exec_frame(const Sbx__V1__Guest__GuestFrame *f)
{
        Proc *p = find_stream(f->stream);

        if (!p)
                return; /* the process is gone; late stdin or signals are moot */
        switch (f->body_case) {
        case SBX__V1__GUEST__GUEST_FRAME__BODY_STDIN:
                if (p->in_w.fd < 0) {
                        /* Nowhere to write: give the credit straight back. */
                        p->in_returned += (uint32_t)f->stdin.len;
                        return_credit(p, true);
                        return;
                }
                if (sbx_buffer_append(&p->in_buf, f->stdin.data, f->stdin.len) < 0) {
                        log_warning("Stream %u sent stdin beyond its credit; dropping it", f->stream);
                        return;
                }
                write_stdin(p);
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_STDIN_CLOSE:
                p->in_close = true;
                write_stdin(p);
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_CREDIT: {
                uint32_t id = p->stream;
                p->out_credit += f->credit;
                pump(&p->out);
                if (find_stream(id) == p)
                        pump(&p->err);
                return;
        }
        case SBX__V1__GUEST__GUEST_FRAME__BODY_SIGNAL:
                if (f->signal == 0 || f->signal >= (uint32_t)NSIG)
                        return;
                if (kill(-p->pid, (int)f->signal) < 0)
                        kill(p->pid, (int)f->signal);
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_RESIZE:
                if (p->out.w.fd >= 0) {
                        struct winsize ws = { .ws_row = (unsigned short)f->resize->rows,
                                              .ws_col = (unsigned short)f->resize->cols };
                        ioctl(p->out.w.fd, TIOCSWINSZ, &ws);
                }
                return;
        default:
                return;
        }
}

void guest_exec_reset(uint32_t stream)
{
        Proc *p = find_stream(stream);
        if (!p)
                return;
        /* The client went away: the process goes too. */
        if (!p->exited) {
                kill(-p->pid, SIGKILL);
                kill(p->pid, SIGKILL);
        }
        proc_free(p);
}

void guest_exec_resume(void)
{
        for (Proc *p = procs, *next; p; p = next) {
                next = p->next;
                uint32_t id = p->stream;
                pump(&p->out);
                if (find_stream(id) == p)
                        pump(&p->err);
        }
}
