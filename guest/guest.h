/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * sbx-init, PID 1 of every sandbox. One thread, one epoll loop: the guest channel to the agent,
 * the pipes and terminals of the processes it runs, and a signalfd for SIGCHLD. Declarations shared
 * by its files.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/base/buffer.h"
#include "common/channel/channel.h"
#include "proto/sbx/v1/guest.pb-c.h"

/* ---- the loop (guest-init.c) ---- */

typedef struct GuestWatch GuestWatch;
typedef void (*GuestWatchFn)(GuestWatch *w, uint32_t events);
struct GuestWatch {
        int fd;
        GuestWatchFn fn;
        uint32_t events;
};

/* Adds, changes (events) or removes an fd of the loop. */
int guest_watch_add(GuestWatch *w, int fd, uint32_t events, GuestWatchFn fn);
int guest_watch_mod(GuestWatch *w, uint32_t events);
void guest_watch_del(GuestWatch *w);

/* Syncs the disks and powers the machine off (guest-init.c). Never returns. */
_Noreturn void guest_power_off(void);

/* ---- the channel (guest-channel.c) ---- */

int guest_channel_open(void);
/* Sends one frame; queues when the transport is busy. Frames to a stream reset by the host are
 * dropped. -EPIPE when the channel is gone. */
int guest_send(const Sbx__V1__Guest__GuestFrame *f);
/* Convenience senders. */
int guest_send_result(uint32_t stream, int error, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
int guest_send_credit(uint32_t stream, uint32_t bytes);
/* Blocks until the first frame (Config) arrives; the caller frees it. */
int guest_channel_read_config(Sbx__V1__Guest__Config **ret);
/* Starts serving frames from the loop. */
int guest_channel_start(void);
/* True while the transport has room (producers stop reading their sources otherwise). */
bool guest_channel_writable(void);
/* Called when the channel drains again: producers resume. */
void guest_channel_on_drain(void (*fn)(void));

/* ---- the setup (guest-mount.c, guest-net.c) ---- */

int guest_mount_early(void);
int guest_mount_root(const Sbx__V1__Guest__Config *c);
int guest_net_setup(const Sbx__V1__Guest__Config *c);
int guest_trust_ca(const char *pem);

/* ---- users (guest-user.c) ---- */

typedef struct GuestUser {
        uid_t uid;
        gid_t gid;
        char name[64];
        char home[256];
        /* Supplementary groups (from /etc/group), for setgroups(). */
        size_t n_groups;
        gid_t groups[32];
} GuestUser;

/* Looks a user up by name or uid in the sandbox's /etc/passwd; -ESRCH when there is none (a bare
 * uid is accepted even without an entry). */
int guest_user_find(const char *name, GuestUser *ret);

/* ---- the environment and the default user (guest-env.c) ---- */

int guest_env_init(const Sbx__V1__Guest__Config *c);
/* A new environment for a process: the sandbox's, then `extra`, or only `extra` when clear. */
char **guest_env_build(Sbx__V1__Guest__Spawn__EnvEntry **extra, size_t n_extra, bool clear);
void guest_env_handle(uint32_t stream, const Sbx__V1__Guest__EnvOp *op);
/* The default user (Config.user); root when the image has no such user. */
const GuestUser *guest_default_user(void);

/* ---- processes (guest-exec.c) ---- */

void guest_exec_spawn(uint32_t stream, const Sbx__V1__Guest__Spawn *s);
void guest_exec_frame(const Sbx__V1__Guest__GuestFrame *f);
void guest_exec_reset(uint32_t stream);
void guest_exec_sigchld(void);
void guest_exec_resume(void);

/* ---- files (guest-fs.c) ---- */

void guest_fs_request(uint32_t stream, const Sbx__V1__Guest__FsRequest *r);
/* Data, end, credit, file_op and reset frames of file streams. Returns false if not a file stream. */
bool guest_fs_frame(const Sbx__V1__Guest__GuestFrame *f);
void guest_fs_resume(void);

/* gRPC status for an errno inside the guest. */
int guest_status_of_errno(int e);
