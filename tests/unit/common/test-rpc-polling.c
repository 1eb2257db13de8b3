/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rpc tests of test-rpc.c once more, on a runtime made by sbx_rpc_new_polling_loop(), and what
 * is particular to that mode: libuv's timers and fds still run while the loop thread sleeps in
 * gRPC's queue, even while calls fail as fast as they are made; an idle loop does not spin; and a
 * turn of the loop after shutdown is libuv's.
 */
#define SBX_TEST_RPC_POLLING_LOOP 1
#include "tests/unit/common/test-rpc.c"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void flag_done(void *userdata)
{
        *(bool *)userdata = true;
}

static void flag_timer(uv_timer_t *t)
{
        *(bool *)t->data = true;
}

Test(rpc_polling_loop, timer_fires_while_sleeping_in_grpc, .init = setup_plain, .fini = teardown)
{
        uv_timer_t t;
        bool fired = false;

        uv_timer_init(&env.loop, &t);
        t.data = &fired;
        /* libuv counts from its cached loop time: make that now, or the timer is due early. */
        uv_update_time(&env.loop);
        uv_timer_start(&t, flag_timer, 50, 0);
        usec_t start = sbx_now_monotonic();
        while (!fired && sbx_now_monotonic() - start < 5 * USEC_PER_SEC)
                sbx_rpc_run_once(&env.loop);
        usec_t took = sbx_now_monotonic() - start;
        cr_assert(fired);
        cr_assert_geq(took, 45 * USEC_PER_MSEC, "the timer fired early: %llu us", (unsigned long long)took);
        cr_assert_lt(took, 500 * USEC_PER_MSEC, "the timer fired late: %llu us", (unsigned long long)took);
        uv_close((uv_handle_t *)&t, NULL);
        uv_run(&env.loop, UV_RUN_NOWAIT);
}

typedef struct Pushed {
        SbxQueueItem item;
        bool seen;
} Pushed;

static void on_pushed(SbxQueue *q, SbxQueueItem *item, void *userdata)
{
        container_of(item, Pushed, item)->seen = true;
}

static void *push_later(void *arg)
{
        SbxQueue *q = arg;
        static Pushed p;
        usleep(50 * 1000);
        sbx_queue_push(q, &p.item);
        return &p;
}

/* Another thread's push reaches the loop through libuv's fd, hence through the waker. */
Test(rpc_polling_loop, libuv_fd_wakes_the_loop, .init = setup_plain, .fini = teardown)
{
        SbxQueue *q = NULL;
        pthread_t th;
        void *ret;
        bool closed = false;

        cr_assert_eq(sbx_queue_new(&env.loop, on_pushed, NULL, &q), 0);
        /* Sleep in gRPC first, with nothing due: only the push can end the wait early. */
        sbx_rpc_run_once(&env.loop);
        cr_assert_eq(pthread_create(&th, NULL, push_later, q), 0);
        pthread_join(th, &ret);
        Pushed *p = ret;
        usec_t start = sbx_now_monotonic();
        while (!p->seen && sbx_now_monotonic() - start < 5 * USEC_PER_SEC)
                sbx_rpc_run_once(&env.loop);
        cr_assert(p->seen, "the pushed item never reached the loop");
        cr_assert_lt(sbx_now_monotonic() - start, 500 * USEC_PER_MSEC);
        sbx_queue_close(q, flag_done, &closed);
        cr_assert_eq(sbx_test_run_until(&env.loop, &closed, USEC_PER_SEC), 0);
}

/* Two socket pairs: a byte on `first` makes its poll callback start watching `second`, which is
 * readable already. libuv registers a watcher with epoll only in its next poll phase, so unless the
 * turn after the callback runs libuv before sleeping, the waker never hears of `second`. The turn
 * relies on uv_backend_timeout() being 0 while such changes wait (libuv 1.44 and later). */
typedef struct Chained {
        int first[2], second[2];
        uv_poll_t first_poll, second_poll;
        bool second_seen;
} Chained;

static void on_second(uv_poll_t *h, int status, int events)
{
        Chained *c = h->data;
        c->second_seen = true;
        uv_poll_stop(h);
}

static void on_first(uv_poll_t *h, int status, int events)
{
        Chained *c = h->data;
        char b;
        /* Drained, so that `first` cannot wake the loop a second time. */
        cr_assert_eq(read(c->first[0], &b, 1), 1);
        uv_poll_stop(h);
        cr_assert_eq(uv_poll_start(&c->second_poll, UV_READABLE, on_second), 0);
}

Test(rpc_polling_loop, a_watcher_started_in_a_callback_is_heard, .init = setup_plain, .fini = teardown)
{
        Chained c = { 0 };
        uv_timer_t watchdog;
        bool late = false;

        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c.first), 0);
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c.second), 0);
        cr_assert_eq(write(c.second[1], "x", 1), 1);
        uv_poll_init(&env.loop, &c.first_poll, c.first[0]);
        uv_poll_init(&env.loop, &c.second_poll, c.second[0]);
        c.first_poll.data = c.second_poll.data = &c;
        cr_assert_eq(uv_poll_start(&c.first_poll, UV_READABLE, on_first), 0);
        /* Only to end the test should the loop never wake: a timer turn would flush libuv too. */
        uv_timer_init(&env.loop, &watchdog);
        watchdog.data = &late;
        uv_update_time(&env.loop);
        uv_timer_start(&watchdog, flag_timer, 3000, 0);
        /* Let the loop register `first` and go to sleep with nothing due. */
        sbx_rpc_run_once(&env.loop);
        cr_assert_eq(write(c.first[1], "x", 1), 1);

        usec_t start = sbx_now_monotonic();
        while (!c.second_seen && !late)
                sbx_rpc_run_once(&env.loop);
        usec_t took = sbx_now_monotonic() - start;
        cr_expect(c.second_seen && !late, "the second watcher was heard only when a timer woke the loop");
        cr_expect_lt(took, 500 * USEC_PER_MSEC, "took %llu us", (unsigned long long)took);
        uv_close((uv_handle_t *)&watchdog, NULL);
        uv_close((uv_handle_t *)&c.first_poll, NULL);
        uv_close((uv_handle_t *)&c.second_poll, NULL);
        uv_run(&env.loop, UV_RUN_NOWAIT);
        for (int i = 0; i < 2; i++) {
                close(c.first[i]);
                close(c.second[i]);
        }
}

/* A loop with only a slow timer sleeps: it does not turn gRPC's queue into a busy wait. */
Test(rpc_polling_loop, idle_loop_does_not_spin, .init = setup_plain, .fini = teardown)
{
        struct rusage r0, r1;
        bool done = false;
        uv_timer_t t;

        uv_timer_init(&env.loop, &t);
        t.data = &done;
        uv_timer_start(&t, flag_timer, 300, 0);
        getrusage(RUSAGE_THREAD, &r0);
        unsigned turns = 0;
        while (!done) {
                sbx_rpc_run_once(&env.loop);
                turns++;
        }
        getrusage(RUSAGE_THREAD, &r1);
        long us = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1000000L +
                  (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) +
                  (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1000000L +
                  (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
        cr_assert_lt(turns, 50, "%u turns in 300 ms", turns);
        cr_assert_lt(us, 50000, "%ld us of CPU in 300 ms of idling", us);
        uv_close((uv_handle_t *)&t, NULL);
        uv_run(&env.loop, UV_RUN_NOWAIT);
}

typedef struct Storm {
        SbxRpcChannel *ch;
        unsigned calls;
        bool stop, idle;
} Storm;

static void storm_call(Storm *st);

static void storm_done(const SbxRpcStatus *status, ProtobufCMessage *response, void *userdata)
{
        Storm *st = userdata;
        if (response)
                protobuf_c_message_free_unpacked(response, NULL);
        st->calls++;
        if (st->stop)
                st->idle = true;
        else
                storm_call(st);
}

static void storm_call(Storm *st)
{
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        cr_assert_eq(sbx_rpc_unary(st->ch, &sbx_test_echo_unary, &req.base, NULL, storm_done, st, NULL), 0);
}

static void stop_storm(uv_timer_t *t)
{
        Storm *st = t->data;
        st->stop = true;
}

/* A client that calls again as soon as a call fails, against a peer that is down: each failure
 * completes at once, so the queue is never empty. libuv (here a timer) must still get its turns. */
Test(rpc_polling_loop, libuv_runs_while_calls_fail_fast, .init = setup_plain, .fini = teardown,
     .timeout = 30)
{
        Storm st = { 0 };
        char target[64];
        uv_timer_t t;

        snprintf(target, sizeof(target), "127.0.0.1:%d", sbx_test_free_port());
        cr_assert_eq(sbx_rpc_channel_new(env.rpc, target, NULL, &st.ch), 0);
        uv_timer_init(&env.loop, &t);
        t.data = &st;
        uv_update_time(&env.loop);
        uv_timer_start(&t, stop_storm, 200, 0);
        storm_call(&st);
        usec_t start = sbx_now_monotonic();
        while (!st.stop && sbx_now_monotonic() - start < 10 * USEC_PER_SEC)
                sbx_rpc_run_once(&env.loop);
        cr_assert(st.stop, "the timer never ran while calls kept failing");
        cr_assert_lt(sbx_now_monotonic() - start, 2 * USEC_PER_SEC);
        cr_assert_eq(sbx_test_run_until(&env.loop, &st.idle, 5 * USEC_PER_SEC), 0);
        cr_assert_gt(st.calls, 1u);
        sbx_rpc_channel_free(st.ch);
        uv_close((uv_handle_t *)&t, NULL);
        uv_run(&env.loop, UV_RUN_NOWAIT);
}

/* After shutdown the runtime is gone and a turn of the loop is plain libuv. */
Test(rpc_polling_loop, turns_after_shutdown_are_libuv_turns, .init = setup_plain)
{
        uv_timer_t t;
        bool fired = false;

        sbx_rpc_channel_free(env.ch);
        env.ch = NULL;
        shutdown_done = false;
        sbx_rpc_shutdown(env.rpc, 0, on_shutdown, NULL);
        cr_assert_eq(sbx_test_run_until(&env.loop, &shutdown_done, 10 * USEC_PER_SEC), 0);
        env.rpc = NULL;
        uv_timer_init(&env.loop, &t);
        t.data = &fired;
        uv_timer_start(&t, flag_timer, 10, 0);
        while (!fired)
                sbx_rpc_run_once(&env.loop);
        uv_close((uv_handle_t *)&t, NULL);
        cr_assert_eq(sbx_loop_close_all(&env.loop), 0);
}
