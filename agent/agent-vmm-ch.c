/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Cloud Hypervisor driver. The VMM is started with nothing but its API socket
 * (`cloud-hypervisor --api-socket path=<dir>/api.sock`) and the whole VM is described through its
 * REST API, as published in third_party/cloud-hypervisor/openapi.yaml: GET vmm.ping until
 * the socket answers, PUT vm.create with a VmConfig, PUT vm.boot. The kernel boots directly through
 * the PVH entry of the uncompressed vmlinux; the devices are virtio-pci; the guest channel is vsock,
 * which Cloud Hypervisor proxies to a unix socket without any host kernel module.
 *
 * This driver was written against the OpenAPI file and is checked against it by a contract test
 * (tests/interop/ch-contract.test.mjs); docs/vmm.md says what has and has not been run.
 *
 * The API calls are blocking libcurl calls made in libuv's thread pool (uv_queue_work), one job per
 * boot, and `done` runs from the job's completion callback on the agent's loop. A boot is a few short
 * requests on a local socket (pings until the VMM answers, vm.create, vm.boot), and as a straight line
 * of blocking calls it reads as the protocol it is; libcurl's multi interface bridged to libuv would
 * need socket and timer callbacks and a state machine for the same few requests. The price is a pool thread
 * held while the VMM starts (bounded by CH_API_WAIT_USEC and CH_CALL_TIMEOUT_MS); the agent has no other
 * thread-pool users, and boots beyond the pool's size (4) merely queue. The worker touches only its own job;
 * nothing of the sandbox crosses threads.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/agent-vmm.h"
#include "common/base/buffer.h"
#include "common/base/fd-util.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/base/time-util.h"

/* The guest's vsock port for the channel; sbx-init learns it from the kernel command line
 * ("sbx.channel=vsock:<port>"). */
#define CH_VSOCK_PORT 1024
/* The guest's vsock context id: 0 to 2 are reserved (hypervisor, local, host); 3 is the first a guest
 * may have, and each guest's vsock is private to its VMM, so every guest can have it. */
#define CH_GUEST_CID 3
/* How long the VMM may take, from its spawn, to answer on its API socket, and how often to try. */
#define CH_API_WAIT_USEC  (5 * USEC_PER_SEC)
#define CH_API_RETRY_USEC (10 * 1000)
/* One API call. vm.boot creates every device and loads the kernel, well under a second; the bound
 * only keeps a hung VMM from holding a pool thread for ever. */
#define CH_CALL_TIMEOUT_MS 15000L
/* The most of a response body kept for an error account. */
#define CH_BODY_MAX 4096
/* The error account of a failed configure, in the sandbox directory (see configure_error). */
#define CH_ERROR_FILE "api-error"

DEFINE_TRIVIAL_CLEANUP_FUNC(CURL *, curl_easy_cleanup);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct curl_slist *, curl_slist_free_all);

/* The sockets the VMM makes in the sandbox directory. */
#define CH_API_SOCKET   "api.sock"
#define CH_VSOCK_SOCKET "vsock.sock"

/* The sandbox directory must suit both places it ends up in: unix socket addresses (the API and
 * vsock sockets live there) and Cloud Hypervisor's option syntax, which splits --api-socket's value
 * at commas. */
static int check_dir(const AgentVmmSpec *s)
{
        struct sockaddr_un sa;

        if (isempty(s->dir) || strchr(s->dir, ','))
                return -EINVAL;
        if (strlen(s->dir) + 1 + strlen(CH_VSOCK_SOCKET) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        return 0;
}

static int ch_command(Agent *a, const AgentVmmSpec *s, char ***ret_argv)
{
        _cleanup_strv_free_ char **v = NULL;
        _cleanup_free_ char *api = NULL;
        int r;

        if (isempty(a->cfg.ch_binary))
                return -EINVAL;
        /* Cloud Hypervisor runs guests only on KVM: there is no emulator to fall back to. */
        if (!s->kvm)
                return -EOPNOTSUPP;
        /* It boots a kernel directly only through the PVH entry of an uncompressed ELF vmlinux. */
        if (!s->image->pvh)
                return -EOPNOTSUPP;
        if ((r = check_dir(s)) < 0)
                return r;
        if (asprintf(&api, "path=%s/%s", s->dir, CH_API_SOCKET) < 0)
                return -ENOMEM;
        if ((r = strv_extend(&v, a->cfg.ch_binary)) < 0 || (r = strv_extend(&v, "--api-socket")) < 0 ||
            (r = strv_extend(&v, api)) < 0)
                return r;
        *ret_argv = TAKE_PTR(v);
        return 0;
}

static void ch_channel(const AgentVmmSpec *s, char *path, size_t n, int *ret_vsock_port)
{
        snprintf(path, n, "%s/%s", s->dir, CH_VSOCK_SOCKET);
        *ret_vsock_port = CH_VSOCK_PORT;
}

/* ---- the VmConfig ---- */

/* Sets o[key] to v, which it takes (NULL: a json_pack() that failed). */
static int set(json_t *o, const char *key, json_t *v)
{
        return v && json_object_set_new(o, key, v) == 0 ? 0 : -ENOMEM;
}

static int vm_config_json(const AgentVmmSpec *s, char **ret)
{
        _cleanup_(json_decrefp) json_t *root = NULL;
        _cleanup_free_ char *cmdline = NULL, *vsock = NULL, *console = NULL;
        char extra[64];
        int r;

        if (s->vcpus < 1 || s->memory_mb < 1)
                return -EINVAL;
        snprintf(extra, sizeof(extra), "sbx.channel=vsock:%d", CH_VSOCK_PORT);
        if ((r = agent_vmm_cmdline(s, extra, &cmdline)) < 0)
                return r;
        if (asprintf(&vsock, "%s/%s", s->dir, CH_VSOCK_SOCKET) < 0 ||
            asprintf(&console, "%s/console.log", s->dir) < 0)
                return -ENOMEM;

        /*
         * Devices are virtio-pci on segment 0, created in the order the VmConfig lists them, and the
         * guest enumerates the bus in slot order: the base image is vda, the data disk vdb.
         *
         * The base image is shared by every sandbox of the node, so it is read-only. Both disks are
         * declared raw, so that the VMM never probes the guest-writable data disk for an image header
         * (a guest could write a qcow2 header there).
         *
         * The serial port (ttyS0, the kernel's console) goes to a file; the virtio console is off, as
         * nothing reads it.
         */
        json_int_t vcpus = s->vcpus, bytes = (json_int_t)s->memory_mb * 1048576;
        struct {
                const char *key;
                json_t *value;
        } members[] = {
                { "payload", json_pack("{s:s, s:s, s:s}", "kernel", s->image->kernel, "initramfs",
                                       s->image->initramfs, "cmdline", cmdline) },
                { "cpus", json_pack("{s:I, s:I}", "boot_vcpus", vcpus, "max_vcpus", vcpus) },
                { "memory", json_pack("{s:I}", "size", bytes) },
                { "disks",
                  json_pack("[{s:s, s:b, s:s, s:s}, {s:s, s:b, s:s, s:s}]", "path", s->image->rootfs,
                            "readonly", 1, "image_type", "Raw", "serial", "sbx-base", "path", s->data_disk,
                            "readonly", 0, "image_type", "Raw", "serial", "sbx-data") },
                { "vsock", json_pack("{s:I, s:s}", "cid", (json_int_t)CH_GUEST_CID, "socket", vsock) },
                { "serial", json_pack("{s:s, s:s}", "mode", "File", "file", console) },
                { "console", json_pack("{s:s}", "mode", "Off") },
                { "rng", json_pack("{s:s}", "src", "/dev/urandom") },
        };
        root = json_object();
        r = root ? 0 : -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(members); i++) {
                if (r >= 0)
                        r = set(root, members[i].key, TAKE_PTR(members[i].value));
                /* Left over only when an earlier member failed. */
                json_decref(members[i].value);
        }
        if (r < 0)
                return r;

        if (s->net && !isempty(s->net->tap)) {
                /*
                 * The tap exists already (agent-net made it, up, owned by the VMM's user), so Cloud
                 * Hypervisor only attaches to it; it configures addresses only on taps it creates
                 * itself. Neither host_mac nor mtu is given: setting either on the tap needs
                 * CAP_NET_ADMIN, which the jailed VMM does not have. num_queues 2 is one RX/TX pair: the
                 * tap is single-queue and the VMM refuses a mismatch.
                 */
                json_t *net = json_pack("[{s:s, s:s, s:i}]", "tap", s->net->tap, "mac", s->net->mac,
                                        "num_queues", 2);
                if ((r = set(root, "net", net)) < 0)
                        return r;
        }

        char *text = json_dumps(root, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

/* ---- the API calls (in a pool thread) ---- */

typedef struct ChBoot {
        uv_work_t work;
        char *api_socket;
        char *error_file;
        char *pid_file;
        char *vm_config;
        void (*done)(int error, void *userdata);
        void *userdata;
        int result;
        /* What went wrong, in words, for the error account. */
        char *error;
} ChBoot;

static ChBoot *boot_free(ChBoot *b)
{
        if (!b)
                return NULL;
        free(b->api_socket);
        free(b->error_file);
        free(b->pid_file);
        free(b->vm_config);
        free(b->error);
        free(b);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(ChBoot *, boot_free);

static _printf_(2, 3) void set_error(ChBoot *b, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        free(b->error);
        b->error = s;
}

static size_t keep_body(char *p, size_t size, size_t n, void *userdata)
{
        SbxBuffer *body = userdata;
        size_t len = size * n;
        size_t room = CH_BODY_MAX - SBX_MIN(sbx_buffer_size(body), (size_t)CH_BODY_MAX);

        /* Past the cap the rest is dropped rather than refused, so that a long answer still ends the
         * call with its status. Returning less than len would abort the transfer. */
        if (sbx_buffer_append(body, p, SBX_MIN(len, room)) < 0)
                return 0;
        return len;
}

/* An error body as one line: Cloud Hypervisor answers a JSON array of messages, from the outermost
 * error to its root cause; anything else is kept as text. */
static char *describe_body(const SbxBuffer *body)
{
        _cleanup_(json_decrefp) json_t *j = NULL;
        SbxBuffer out = SBX_BUFFER_INIT;
        const uint8_t *p = sbx_buffer_data(body);
        size_t n = sbx_buffer_size(body);
        char *ret = NULL;

        j = json_loadb((const char *)p, n, 0, NULL);
        if (j && json_is_array(j) && json_array_size(j) > 0) {
                for (size_t i = 0; i < json_array_size(j); i++) {
                        json_t *item = json_array_get(j, i);
                        const char *m = json_is_string(item) ? json_string_value(item) : "?";
                        if (sbx_buffer_appendf(&out, "%s%s", i ? ": " : "", m) < 0)
                                goto fail;
                }
        } else {
                for (size_t i = 0; i < n; i++) {
                        char c = (char)p[i];
                        if (sbx_buffer_append(&out, c == '\n' || c == '\r' || c == '\t' ? " " : &c, 1) < 0)
                                goto fail;
                }
        }
        if (sbx_buffer_steal_string(&out, &ret) < 0)
                ret = NULL;
fail:
        sbx_buffer_done(&out);
        return ret;
}

static int status_to_errno(long status)
{
        if (status >= 200 && status < 300)
                return 0;
        switch (status) {
        case 400: /* the VMM could not parse or accept what we sent */
                return -EINVAL;
        case 404: /* no VM to boot, or an endpoint this VMM does not have */
                return -ENOENT;
        case 405: /* the VM is in the wrong state for the action */
                return -EBUSY;
        case 429:
                return -EAGAIN;
        default:
                return status >= 500 ? -EIO : -EPROTO;
        }
}

static int curl_to_errno(CURLcode c)
{
        switch (c) {
        case CURLE_COULDNT_CONNECT: /* no socket yet, or nobody listening on it yet */
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
                return -ECONNRESET;
        default:
                return -EIO;
        }
}

#define SETOPT(c, opt, val)                                          \
        do {                                                         \
                if (curl_easy_setopt((c), (opt), (val)) != CURLE_OK) \
                        return -ENOMEM;                              \
        } while (0)

/*
 * One call: `method` on /api/v1/<endpoint>, with a JSON body or none. 0 on a 2xx answer, whose body is
 * left in `body`; a negative errno otherwise, with an account in b->error. A PUT without a body goes
 * out without Content-Length: Cloud Hypervisor answers 400 to a body on actions that take none.
 */
static int api_call(ChBoot *b, CURL *c, const char *method, const char *endpoint, const char *json,
                    SbxBuffer *body)
{
        _cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
        char url[128];
        long status = 0;
        CURLcode cc;
        int r;

        sbx_buffer_clear(body);
        curl_easy_reset(c);
        snprintf(url, sizeof(url), "http://localhost/api/v1/%s", endpoint);
        headers = curl_slist_append(NULL, "Accept: application/json");
        /* libcurl would announce larger bodies with "Expect: 100-continue" and wait for an answer. */
        if (headers && json)
                headers = curl_slist_append(headers, "Expect:");
        if (headers && json)
                headers = curl_slist_append(headers, "Content-Type: application/json");
        if (!headers)
                return -ENOMEM;

        SETOPT(c, CURLOPT_UNIX_SOCKET_PATH, b->api_socket);
        SETOPT(c, CURLOPT_URL, url);
        /* Worker threads must not have libcurl install signal handlers. */
        SETOPT(c, CURLOPT_NOSIGNAL, 1L);
        SETOPT(c, CURLOPT_NOPROXY, "*");
        SETOPT(c, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
        SETOPT(c, CURLOPT_TIMEOUT_MS, CH_CALL_TIMEOUT_MS);
        SETOPT(c, CURLOPT_HTTPHEADER, headers);
        SETOPT(c, CURLOPT_WRITEFUNCTION, keep_body);
        SETOPT(c, CURLOPT_WRITEDATA, body);
        if (!streq(method, "GET"))
                SETOPT(c, CURLOPT_CUSTOMREQUEST, method);
        if (json) {
                SETOPT(c, CURLOPT_POSTFIELDS, json);
                SETOPT(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
        }

        cc = curl_easy_perform(c);
        if (cc != CURLE_OK) {
                set_error(b, "%s /api/v1/%s: %s", method, endpoint, curl_easy_strerror(cc));
                return curl_to_errno(cc);
        }
        (void)curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        r = status_to_errno(status);
        if (r < 0) {
                _cleanup_free_ char *text = describe_body(body);
                set_error(b, "%s /api/v1/%s: HTTP %ld%s%s", method, endpoint, status,
                          isempty(text) ? "" : ": ", strempty(text));
        }
        return r;
}

/* Cloud Hypervisor has no pid file option; its ping answer names its pid. The agent finds a VMM that
 * outlived it through <dir>/vmm.pid (as QEMU's -pidfile writes it), so the driver writes it here. */
static int record_pid(ChBoot *b, const SbxBuffer *ping)
{
        _cleanup_(json_decrefp) json_t *j = NULL;
        char text[32];
        json_int_t pid;
        int r;

        j = json_loadb((const char *)sbx_buffer_data(ping), sbx_buffer_size(ping), 0, NULL);
        pid = json_integer_value(json_object_get(j, "pid"));
        if (pid <= 1)
                return 0; /* older versions do not say; then only adoption after an agent restart fails */
        snprintf(text, sizeof(text), "%lld\n", (long long)pid);
        r = sbx_write_file_atomic(b->pid_file, text, strlen(text), 0644);
        if (r < 0)
                set_error(b, "Could not write %s: %s", b->pid_file, strerror(ERRNO_VALUE(r)));
        return r;
}

static int boot_vm(ChBoot *b)
{
        _cleanup_(curl_easy_cleanupp) CURL *c = curl_easy_init();
        SbxBuffer body = SBX_BUFFER_INIT;
        usec_t deadline = sbx_now_monotonic() + CH_API_WAIT_USEC;
        int r;

        if (!c)
                return -ENOMEM;
        /* The VMM binds its API socket a moment after it starts: until then, connecting fails. */
        while ((r = api_call(b, c, "GET", "vmm.ping", NULL, &body)) == -ECONNREFUSED) {
                if (sbx_now_monotonic() >= deadline) {
                        set_error(b, "Nothing answered on %s within %llus", b->api_socket,
                                  (unsigned long long)(CH_API_WAIT_USEC / USEC_PER_SEC));
                        r = -ETIMEDOUT;
                        break;
                }
                usleep(CH_API_RETRY_USEC);
        }
        if (r >= 0)
                r = record_pid(b, &body);
        if (r >= 0)
                r = api_call(b, c, "PUT", "vm.create", b->vm_config, &body);
        if (r >= 0)
                r = api_call(b, c, "PUT", "vm.boot", NULL, &body);
        sbx_buffer_done(&body);
        return r;
}

static void boot_work(uv_work_t *w)
{
        ChBoot *b = container_of(w, ChBoot, work);

        b->result = boot_vm(b);
        if (b->result < 0 && b->error) {
                size_t n = strlen(b->error);
                /* The account goes to a file before `done` runs, so `done` may already ask for it. A
                 * failure to write it loses only the account, not the error. */
                b->error[n] = '\n';
                (void)sbx_write_file_atomic(b->error_file, b->error, n + 1, 0640);
                b->error[n] = '\0';
        }
}

static void boot_done(uv_work_t *w, int status)
{
        _cleanup_(boot_freep) ChBoot *b = container_of(w, ChBoot, work);

        b->done(status < 0 ? status : b->result, b->userdata);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int ch_configure(Agent *a, const AgentVmmSpec *s, void (*done)(int error, void *userdata),
                        void *userdata)
{
        _cleanup_(boot_freep) ChBoot *b = NULL;
        int r;

        /* curl_global_init() is not thread-safe in every libcurl: it runs once, before any worker
         * calls libcurl. */
        (void)pthread_once(&curl_once, curl_init);
        if (curl_init_result != CURLE_OK)
                return -ENOMEM;
        if ((r = check_dir(s)) < 0)
                return r;
        b = new0(ChBoot, 1);
        if (!b)
                return -ENOMEM;
        if (asprintf(&b->api_socket, "%s/%s", s->dir, CH_API_SOCKET) < 0 ||
            asprintf(&b->error_file, "%s/%s", s->dir, CH_ERROR_FILE) < 0 ||
            asprintf(&b->pid_file, "%s/vmm.pid", s->dir) < 0)
                return -ENOMEM;
        if ((r = vm_config_json(s, &b->vm_config)) < 0)
                return r;
        b->done = done;
        b->userdata = userdata;
        /* An account from an earlier attempt in the same directory is not this one's. */
        (void)unlink(b->error_file);

        r = uv_queue_work(a->loop, &b->work, boot_work, boot_done);
        if (r < 0)
                return r;
        TAKE_PTR(b);
        return 0;
}

static int ch_configure_error(const AgentVmmSpec *s, char **ret)
{
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t n = 0;
        int r;

        if (asprintf(&path, "%s/%s", s->dir, CH_ERROR_FILE) < 0)
                return -ENOMEM;
        r = sbx_read_file(path, 2 * CH_BODY_MAX, &text, &n);
        if (r == -ENOENT)
                return -ENODATA;
        if (r < 0)
                return r;
        while (n > 0 && text[n - 1] == '\n')
                text[--n] = '\0';
        if (n == 0)
                return -ENODATA;
        *ret = TAKE_PTR(text);
        return 0;
}

const AgentVmmDriver agent_vmm_cloud_hypervisor = {
        .name = "cloud-hypervisor",
        .command = ch_command,
        .channel = ch_channel,
        .configure = ch_configure,
        .configure_error = ch_configure_error,
        /* By the serials set in vm_config_json(), not by probe order. */
        .base_device = "serial:sbx-base",
        .data_device = "serial:sbx-data",
};
