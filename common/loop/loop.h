/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * libuv glue shared by the daemons:
 *
 *  - SbxQueue: the only way another thread talks to the loop. Producers push intrusive items from
 *    any thread; the loop thread drains them in FIFO order after a uv_async wake-up (wake-ups
 *    coalesce, so one drain may see many items).
 *  - SbxSignals: SIGINT/SIGTERM start an orderly shutdown through one callback; a second signal
 *    while shutting down exits at once. SIGPIPE is ignored process-wide.
 *  - sbx_loop_close_all(): closes every handle still open, runs the loop until their close
 *    callbacks ran, and closes the loop.
 *
 * Lifecycle follows libuv's: _new/_init → use → _close(cb); memory is released in close callbacks.
 */

#include <stdbool.h>
#include <uv.h>

typedef struct SbxQueueItem {
        struct SbxQueueItem *next;
} SbxQueueItem;

typedef struct SbxQueue SbxQueue;

/* Called on the loop thread with each item, in push order. The item belongs to the callee. */
typedef void (*SbxQueueHandler)(SbxQueue *q, SbxQueueItem *item, void *userdata);

/* Creates a queue whose items are handed to `handler` on `loop`'s thread. */
int sbx_queue_new(uv_loop_t *loop, SbxQueueHandler handler, void *userdata, SbxQueue **ret);

/* Thread-safe; never blocks beyond a short mutex hold. Items pushed after close are dropped (leaked
 * to the caller: push must not race with close). */
void sbx_queue_push(SbxQueue *q, SbxQueueItem *item);

/* Drains what is queued (on the loop thread), then closes; `done` runs after the handle closed. */
void sbx_queue_close(SbxQueue *q, void (*done)(void *userdata), void *userdata);

typedef struct SbxSignals SbxSignals;

/* `on_shutdown` runs once on the loop thread with the signal number. */
int sbx_signals_new(uv_loop_t *loop, void (*on_shutdown)(int signo, void *userdata), void *userdata,
                    SbxSignals **ret);
void sbx_signals_close(SbxSignals *s);

/* Closes all remaining handles, runs the loop until they are closed, then uv_loop_close(). Returns
 * uv_loop_close()'s result (0, or UV_EBUSY if something kept the loop alive past 10 s). */
int sbx_loop_close_all(uv_loop_t *loop);
