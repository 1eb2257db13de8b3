/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Egress end to end with REAL microVMs: a real etcd, scheduler and agent (its nftables table, DNS
 * forwarder and proxy), and a fake internet (deploy/dev/fake-internet: dnsmasq and echoing web
 * servers in a network namespace of its own, on documentation-range addresses) as the only thing
 * the test's network namespace is routed to. Nothing leaves the machine.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/base/fd-util.h"
#include "common/base/string-util.h"
#include "tests/lib/agents.h"
#include "tests/lib/cluster.h"
#include "tests/lib/sandbox-client.h"

static SbxTestCluster C;
static SbxTestAgent A;
static char *token;
static char inet_name[16], inet_dir[600], upstream_ca[700], dns_arg[64], ca_arg[760];

#define SECRET "hunter2-5f0d1c9a7e3b"

static int run_script(const char *fmt, ...) _printf_(1, 2);
static int run_script(const char *fmt, ...)
{
        char cmd[1400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        int r = system(cmd);
        return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static void setup(void)
{
        memset(&C, 0, sizeof(C));
        memset(&A, 0, sizeof(A));
        cr_assert_eq(sbx_test_netns_enter(), 0, "cannot make a network namespace (tests need root)");
        cr_assert_eq(sbx_test_cluster_start(&C, 1), 0, "control plane did not start");

        /* The fake internet, and this namespace's default route into it. */
        snprintf(inet_name, sizeof(inet_name), "e%d", (int)(getpid() % 100000));
        snprintf(inet_dir, sizeof(inet_dir), "%s/inet", C.dir);
        cr_assert_eq(
                run_script("%s/deploy/dev/fake-internet up %s %s", sbx_test_srcdir(), inet_name, inet_dir),
                0, "the fake internet did not start");
        cr_assert_eq(run_script("%s/deploy/dev/fake-internet link %s fi0 172.31.254", sbx_test_srcdir(),
                                inet_name),
                     0);
        snprintf(upstream_ca, sizeof(upstream_ca), "%s/ca.pem", inet_dir);
        snprintf(dns_arg, sizeof(dns_arg), "--dns-upstream=192.0.2.53");
        snprintf(ca_arg, sizeof(ca_arg), "--egress-upstream-ca=%s", upstream_ca);
        static const char *args[3];
        args[0] = dns_arg;
        args[1] = ca_arg;
        args[2] = NULL;
        A.args = args;
        if (sbx_test_agent_start(&C, &A, 0, "ams") < 0) {
                /* A failed setup gets no teardown: take the fake internet and etcd down here. */
                run_script("%s/deploy/dev/fake-internet down %s %s", sbx_test_srcdir(), inet_name, inet_dir);
                sbx_test_cluster_stop(&C);
                cr_assert_fail("agent did not start");
        }
        token = sbx_test_org(&C, "acme", 5);
        cr_assert_not_null(token);
}

static void teardown(void)
{
        char report[2048];
        int stop = sbx_test_agent_stop(&A, SIGTERM);
        int left = sbx_test_agent_leftovers(&A, report, sizeof(report));
        sbx_test_agent_cleanup(&A);
        run_script("%s/deploy/dev/fake-internet down %s %s", sbx_test_srcdir(), inet_name, inet_dir);
        int r = sbx_test_cluster_stop(&C);
        free(token);
        token = NULL;
        cr_expect_eq(left, 0, "the agent left things behind:\n%s", report);
        cr_expect_eq(stop, 0, "the agent did not shut down cleanly");
        cr_expect_eq(r, 0, "the scheduler did not shut down cleanly");
}

TestSuite(egress, .init = setup, .fini = teardown, .timeout = 300);

/* ---- helpers ---- */

typedef struct Secret {
        const char *name, *value, *host;
} Secret;

static void create(SbxTestSandbox *sb, const char *const *allow, bool open, const Secret *secret)
{
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        Sbx__V1__AllowNet an = SBX__V1__ALLOW_NET__INIT;
        Sbx__V1__SecretInput si = SBX__V1__SECRET_INPUT__INIT, *sip = &si;
        SbxRpcStatus st = { 0 };
        size_t n = 0;

        while (allow && allow[n])
                n++;
        req.region = (char *)"ams";
        req.memory_mb = 768;
        if (!open) {
                an.entries = (char **)allow;
                an.n_entries = n;
                req.allow_net = &an;
        }
        if (secret) {
                si.name = (char *)secret->name;
                si.value = (char *)secret->value;
                si.hosts = (char **)&secret->host;
                si.n_hosts = 1;
                req.secrets = &sip;
                req.n_secrets = 1;
        }
        int r = sbx_test_sandbox_create_req(&C, token, &req, sb, &st);
        cr_assert_eq(r, 0, "Create failed: %d %s", st.code, strempty(st.message));
        sbx_rpc_status_done(&st);
        /* The fake internet's CA, for the connections the proxy splices (the guest checks those). */
        _cleanup_free_ char *pem = NULL;
        size_t size;
        cr_assert_eq(sbx_read_file(upstream_ca, 1 << 16, &pem, &size), 0);
        cr_assert_eq(sbx_test_write_file(sb, "/tmp/inet-ca.pem", pem, size, &st), 0);
        sbx_rpc_status_done(&st);
}

/* Runs a shell script in the sandbox; returns its exit code, stdout in *out (optional). */
static int sh(SbxTestSandbox *sb, char **out, const char *fmt, ...) _printf_(3, 4);
static int sh(SbxTestSandbox *sb, char **out, const char *fmt, ...)
{
        char script[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(script, sizeof(script), fmt, ap);
        va_end(ap);
        char *o = NULL;
        int32_t code = -1;
        cr_assert_eq(sbx_test_sh(sb, script, &o, &code), 0, "exec of %s failed", script);
        if (out)
                *out = o;
        else
                free(o);
        return code;
}

/* curl's exit code: 0 fine, 6 name not resolved, 7 refused, 28 timed out (dropped), 35/56 TLS cut. */
static int curl(SbxTestSandbox *sb, char **body, const char *args)
{
        return sh(sb, body, "curl -sS --max-time 3 --cacert /tmp/inet-ca.pem %s", args);
}

/* ---- allow-lists ---- */

Test(egress, allow_list)
{
        SbxTestSandbox sb;
        char *body = NULL;
        create(&sb,
               (const char *const[]){ "allowed.sbx.test", "*.wild.sbx.test", "198.51.100.30:8080", NULL },
               false, NULL);

        cr_expect_eq(curl(&sb, &body, "http://allowed.sbx.test/"), 0, "http to an allowed name");
        cr_expect(strstr(body, "GET / HTTP/1.1") && strstr(body, "Host: allowed.sbx.test"), "%s", body);
        free(body);
        cr_expect_eq(curl(&sb, &body, "https://allowed.sbx.test/tls"), 0,
                     "https to an allowed name (spliced)");
        cr_expect(strstr(body, "GET /tls HTTP/1.1"), "%s", body);
        free(body);
        cr_expect_eq(curl(&sb, NULL, "http://allowed.sbx.test:8081/"), 0,
                     "a name without a port is allowed on every port (through the nftables set)");

        cr_expect_eq(sh(&sb, NULL, "getent hosts other.sbx.test"), 2,
                     "a name not on the list must not resolve");
        cr_expect_eq(curl(&sb, NULL, "http://198.51.100.20:8080/"), 28,
                     "its address on another port: dropped");
        cr_expect_eq(curl(&sb, &body, "-o /dev/null -w '%{http_code}' http://198.51.100.20/"), 0);
        cr_expect_str_eq(body, "403", "its address on port 80: the proxy refuses");
        free(body);
        cr_expect_neq(curl(&sb, NULL, "--resolve other.sbx.test:443:198.51.100.20 https://other.sbx.test/"),
                      0, "https with a server name not on the list");

        cr_expect_eq(curl(&sb, NULL, "http://198.51.100.30:8080/"), 0, "an address literal on its port");
        cr_expect_eq(curl(&sb, NULL, "http://198.51.100.30:8081/"), 28,
                     "an address literal on another port");

        cr_expect_eq(curl(&sb, NULL, "http://a.wild.sbx.test/"), 0, "below a wildcard");
        cr_expect_eq(curl(&sb, NULL, "http://b.c.wild.sbx.test:8080/"), 0, "deeper below a wildcard");
        cr_expect_eq(sh(&sb, NULL, "getent hosts wild.sbx.test"), 2, "a wildcard does not cover its apex");
        sbx_test_sandbox_done(&sb);
}

/* Resolvers fall back to TCP for truncated answers, and some ask over TCP from the start (glibc's
 * use-vc): the forwarder answers there too, with the same policy, and feeds the same sets. */
Test(egress, dns_over_tcp)
{
        SbxTestSandbox sb;
        char *out = NULL;
        create(&sb, (const char *const[]){ "allowed.sbx.test", NULL }, false, NULL);

        cr_expect_eq(sh(&sb, &out, "RES_OPTIONS=use-vc getent hosts allowed.sbx.test"), 0,
                     "an allowed name over TCP");
        cr_expect_not_null(strstr(out, "198.51.100."), "%s", out);
        free(out);
        cr_expect_eq(sh(&sb, NULL, "RES_OPTIONS=use-vc getent hosts other.sbx.test"), 2,
                     "a name not on the list does not resolve over TCP either");
        cr_expect_eq(
                sh(&sb, NULL,
                   "RES_OPTIONS=use-vc curl -sS --max-time 3 -o /dev/null http://allowed.sbx.test:8081/"),
                0, "an address learnt over TCP opens the set");
        sbx_test_sandbox_done(&sb);
}

Test(egress, empty_list_means_nothing)
{
        SbxTestSandbox sb;
        create(&sb, (const char *const[]){ NULL }, false, NULL);
        char *body = NULL;
        cr_expect_eq(sh(&sb, NULL, "getent hosts allowed.sbx.test"), 2);
        cr_expect_eq(curl(&sb, &body, "-o /dev/null -w '%{http_code}' http://198.51.100.10/"), 0);
        cr_expect_str_eq(body, "403", "the proxy refuses every address");
        free(body);
        cr_expect_neq(curl(&sb, NULL, "https://198.51.100.30/"), 0, "https to an address: refused");
        cr_expect_eq(curl(&sb, NULL, "http://198.51.100.10:8080/"), 28);
        sbx_test_sandbox_done(&sb);
}

/* Its own suite, without the fixture: a skipped test does not get its teardown run. */
Test(egress_ipv6, ipv6_literal)
{
        /* Sandboxes have IPv4 only, and so has this test network. */
        cr_skip_test(
                "the test network has no IPv6: IPv6 literals are parsed and validated (unit tests), not "
                "reached");
}

/* ---- what is never reachable ---- */

Test(egress, blocked_destinations)
{
        SbxTestSandbox a, b;
        char *body = NULL, *gw = NULL, *b_ip = NULL;
        create(&a, NULL, true, NULL);
        create(&b, NULL, true, NULL);

        cr_expect_eq(curl(&a, NULL, "http://allowed.sbx.test/"), 0, "the open internet");
        cr_expect_eq(curl(&a, &body, "-o /dev/null -w '%{http_code}' http://private.sbx.test/"), 0);
        cr_expect_str_eq(body, "403", "a name that resolves to a private address");
        free(body);
        cr_expect_eq(curl(&a, NULL, "http://10.99.0.1:8080/"), 28, "a private range");
        cr_expect_eq(curl(&a, NULL, "http://169.254.169.254:8080/"), 28, "the metadata address");
        cr_expect_eq(curl(&a, &body, "-o /dev/null -w '%{http_code}' http://169.254.169.254/"), 0);
        cr_expect_str_eq(body, "403", "the metadata address on port 80");
        free(body);

        /* The node: only DNS and the proxy answer; the agent's own ports do not. */
        cr_assert_eq(sh(&a, &gw, "ip route | awk '/default/ {print $3}' | tr -d '\\n'"), 0);
        char args[200];
        snprintf(args, sizeof(args), "http://%s:%d/metrics", gw, A.metrics_port);
        cr_expect_eq(curl(&a, NULL, args), 28, "the agent's metrics port on the gateway");
        snprintf(args, sizeof(args), "http://%s:22/", gw);
        cr_expect_eq(curl(&a, NULL, args), 28, "another port of the node");

        /* Another sandbox. */
        cr_assert_eq(sh(&b, &b_ip, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1 | tr -d '\\n'"),
                     0);
        snprintf(args, sizeof(args), "http://%s:8080/", b_ip);
        cr_expect_eq(curl(&a, NULL, args), 28, "another sandbox");
        cr_expect_neq(sh(&a, NULL, "ping -c 1 -W 1 %s", b_ip), 0, "another sandbox, ping");
        free(gw);
        free(b_ip);
        sbx_test_sandbox_done(&a);
        sbx_test_sandbox_done(&b);
}

/* ---- anti-spoofing, and cleanup ---- */

static double metric(const char *name_and_labels)
{
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics | grep -F '%s ' | awk '{print $2}'",
                 A.metrics_port, name_and_labels);
        FILE *f = popen(cmd, "r");
        double v = -1;
        if (f) {
                if (fscanf(f, "%lf", &v) != 1)
                        v = 0;
                pclose(f);
        }
        return v;
}

/* The open internet: the proxy connects to where the guest was going while the request is still on
 * its way, and still goes where the request's name leads when that is elsewhere. */
Test(egress, open_internet_goes_where_the_name_leads)
{
        SbxTestSandbox sb;
        char *body = NULL;
        create(&sb, NULL, true, NULL);

        double used = metric("sbx_agent_egress_preconnects_total{result=\"used\"}");
        double unused = metric("sbx_agent_egress_preconnects_total{result=\"unused\"}");
        cr_expect_eq(curl(&sb, &body, "http://allowed.sbx.test/"), 0);
        cr_expect(body && strstr(body, "to 198.51.100.10\n"), "%s", body);
        free(body);
        cr_expect_eq(curl(&sb, &body, "https://other.sbx.test/tls"), 0, "spliced TLS");
        cr_expect(body && strstr(body, "to 198.51.100.20\n"), "%s", body);
        free(body);
        cr_expect_eq(metric("sbx_agent_egress_preconnects_total{result=\"used\"}"), used + 2);

        /* The guest goes to other.sbx.test's address, but its request names allowed.sbx.test: the
         * request reaches allowed.sbx.test's address, as the proxy resolves names itself. */
        cr_expect_eq(
                curl(&sb, &body, "--resolve allowed.sbx.test:80:198.51.100.20 http://allowed.sbx.test/"), 0);
        cr_expect(body && strstr(body, "to 198.51.100.10\n") && strstr(body, "Host: allowed.sbx.test"), "%s",
                  body);
        free(body);
        cr_expect_eq(curl(&sb, &body,
                          "--resolve allowed.sbx.test:443:198.51.100.20 https://allowed.sbx.test/tls"),
                     0);
        cr_expect(body && strstr(body, "to 198.51.100.10\n"), "%s", body);
        free(body);
        cr_expect_eq(metric("sbx_agent_egress_preconnects_total{result=\"unused\"}"), unused + 2);

        /* A guest slow to send its request: the host (the impatient one at .30) closes the idle
         * pre-connection meanwhile, and the request goes out on a new one. */
        cr_expect_eq(
                sh(&sb, &body,
                   "bash -c \"exec 3<>/dev/tcp/198.51.100.30/80 && sleep 2 && printf 'GET /slow "
                   "HTTP/1.1\\r\\n"
                   "Host: 198.51.100.30\\r\\nConnection: close\\r\\n\\r\\n' >&3 && timeout 5 cat <&3\""),
                0);
        cr_expect(body && strstr(body, "HTTP/1.1 200") && strstr(body, "GET /slow"), "%s", body);
        free(body);
        cr_expect_eq(metric("sbx_agent_egress_preconnects_total{result=\"unused\"}"), unused + 3);

        /* A private address behind a name is refused, pre-connection or not. */
        cr_expect_eq(curl(&sb, &body, "-o /dev/null -w '%{http_code}' http://private.sbx.test/"), 0);
        cr_expect_str_eq(body, "403");
        free(body);
        sbx_test_sandbox_done(&sb);
}

Test(egress, spoofing_dropped_and_rules_removed)
{
        SbxTestSandbox sb;
        create(&sb, (const char *const[]){ "allowed.sbx.test", NULL }, false, NULL);
        cr_expect_eq(curl(&sb, NULL, "http://allowed.sbx.test:8080/"), 0, "before spoofing");
        cr_expect_eq(sh(&sb, NULL, "sudo ip addr add 10.123.45.67/32 dev eth0"), 0);
        cr_expect_eq(curl(&sb, NULL, "--interface 10.123.45.67 http://allowed.sbx.test:8080/"), 28,
                     "a spoofed source address");
        double spoofed = metric("sbx_agent_egress_dropped_packets{reason=\"spoofed\"}");
        cr_expect_gt(spoofed, 0, "no spoofed packet was counted");

        char table[80], cmd[300];
        snprintf(table, sizeof(table), "sbx_%s", A.name);
        for (char *p = table; *p; p++)
                if (*p == '-')
                        *p = '_';
        snprintf(cmd, sizeof(cmd), "nft list table inet %s | grep -q 'chain s[0-9]'", table);
        cr_expect_eq(run_script("%s", cmd), 0, "the sandbox has no chain while it runs");

        Sbx__V1__DeleteSandboxRequest del = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
        SbxRpcStatus st = { 0 };
        SbxRpcChannel *ch = sbx_test_channel(&C, 0, token);
        del.id = sb.id;
        del.wait = true;
        cr_assert_eq(sbx_test_call(&C, ch, &sbx_api_sandboxes_delete, &del.base, &st, NULL), 0);
        sbx_rpc_status_done(&st);
        sbx_rpc_channel_free(ch);
        snprintf(cmd, sizeof(cmd),
                 "nft list table inet %s | grep -E -q 'chain s[0-9]|set s[0-9]|counter s[0-9]'", table);
        cr_expect_neq(run_script("%s", cmd), 0, "the sandbox's chain, sets or counters outlived it");
        sbx_test_sandbox_done(&sb);
}

/* ---- secrets ---- */

/* Counts occurrences of `needle` in a file, reading only its data extents (disks are sparse). */
static long count_in_file(const char *path, const char *needle)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t nl = strlen(needle), cap = 8u << 20;
        char *buf = malloc(cap + nl);
        long found = 0;
        off_t pos = 0;

        if (fd < 0 || !buf) {
                free(buf);
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        for (;;) {
                off_t data = lseek(fd, pos, SEEK_DATA);
                if (data < 0)
                        break;
                off_t hole = lseek(fd, data, SEEK_HOLE);
                for (off_t at = data; at < hole;) {
                        size_t want = (size_t)(hole - at) < cap ? (size_t)(hole - at) : cap;
                        ssize_t n = pread(fd, buf, want, at);
                        if (n <= 0)
                                break;
                        for (char *p = buf; (p = memmem(p, (size_t)n - (size_t)(p - buf), needle, nl)); p++)
                                found++;
                        /* Overlap the chunks so that a match across their border is not missed. */
                        at += n > (ssize_t)nl ? n - (ssize_t)nl : n;
                        if (at + (off_t)nl >= hole)
                                break;
                }
                pos = hole;
        }
        free(buf);
        close(fd);
        return found;
}

/* Dumps guest memory through QMP (pmemsave) into the sandbox's directory. */
static int dump_memory(const SbxTestSandbox *sb, const char *path, uint64_t size)
{
        char sock[700], cmd[1000], reply[4096];
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sock, sizeof(sock), "%s/sandboxes/%s/qmp.sock", A.dir, sb->id);
        if (strlen(sock) >= sizeof(a.sun_path))
                return -ENAMETOOLONG;
        memcpy(a.sun_path, sock, strlen(sock) + 1);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
                return -errno;
        ssize_t n = read(fd, reply, sizeof(reply) - 1); /* the greeting */
        const char *caps = "{\"execute\":\"qmp_capabilities\"}\n";
        if (n <= 0 || write(fd, caps, strlen(caps)) < 0 || read(fd, reply, sizeof(reply) - 1) <= 0) {
                close(fd);
                return -EIO;
        }
        int len = snprintf(
                cmd, sizeof(cmd),
                "{\"execute\":\"pmemsave\",\"arguments\":{\"val\":0,\"size\":%llu,\"filename\":\"%s\"}}\n",
                (unsigned long long)size, path);
        if (write(fd, cmd, (size_t)len) < 0 || (n = read(fd, reply, sizeof(reply) - 1)) <= 0) {
                close(fd);
                return -EIO;
        }
        reply[n] = '\0';
        close(fd);
        return strstr(reply, "\"return\"") ? 0 : -EIO;
}

/* Sends `request` (printf escapes: \r\n) to allowed.sbx.test:80 from the guest and collects what
 * comes back within 3 s. */
static int raw_http(SbxTestSandbox *sb, char **out, const char *request)
{
        return sh(
                sb, out,
                "bash -c \"exec 3<>/dev/tcp/allowed.sbx.test/80; printf '%s' >&3; timeout 3 cat <&3; true\"",
                request);
}

/* An upgrade hands the connection over only when the host switches (101): a refused one must not
 * let the requests behind it through unchecked (another Host on the same address, say). */
Test(egress, upgrade_only_when_switched)
{
        SbxTestSandbox sb;
        char *out = NULL, *log = NULL, path[700];
        size_t size;
        create(&sb, (const char *const[]){ "allowed.sbx.test", NULL }, false, NULL);

        cr_expect_eq(raw_http(&sb, &out,
                              "GET /upgrade HTTP/1.1\\r\\nHost: allowed.sbx.test\\r\\n"
                              "Connection: Upgrade\\r\\nUpgrade: echo\\r\\n\\r\\nraw-bytes-after-101\\n"),
                     0);
        cr_expect(strstr(out, "HTTP/1.1 101") && strstr(out, "raw-bytes-after-101"),
                  "a switched connection carries raw bytes both ways:\n%s", out);
        free(out);

        cr_expect_eq(raw_http(&sb, &out,
                              "GET /quiet/up HTTP/1.1\\r\\nHost: allowed.sbx.test\\r\\n"
                              "Connection: Upgrade\\r\\nUpgrade: echo\\r\\n\\r\\n"
                              "GET /smuggled HTTP/1.1\\r\\nHost: other.sbx.test\\r\\n\\r\\n"),
                     0);
        cr_expect(strstr(out, "HTTP/1.1 200") && strstr(out, "421 Misdirected"),
                  "after a refused upgrade the next request is checked again:\n%s", out);
        free(out);
        snprintf(path, sizeof(path), "%s/requests.log", inet_dir);
        cr_assert_eq(sbx_read_file(path, 1 << 20, &log, &size), 0);
        cr_expect_not_null(strstr(log, "GET /quiet/up (upgrade)"), "%s", log);
        cr_expect_null(strstr(log, "smuggled"), "a request for another host got through:\n%s", log);
        free(log);
        sbx_test_sandbox_done(&sb);
}

Test(egress, secrets)
{
        SbxTestSandbox sb;
        char *placeholder = NULL, *log = NULL, *environ_all = NULL;
        Secret secret = { .name = "API_TOKEN", .value = SECRET, .host = "allowed.sbx.test" };
        create(&sb, (const char *const[]){ "allowed.sbx.test", "other.sbx.test", NULL }, false, &secret);

        /* The guest holds a placeholder. */
        cr_assert_eq(sh(&sb, &placeholder, "printenv API_TOKEN | tr -d '\\n'"), 0);
        cr_expect(startswith(placeholder, "sbx_secret_"), "API_TOKEN=%s", placeholder);
        cr_expect_null(strstr(placeholder, SECRET));

        /* Toward its host, over TLS (intercepted; the guest trusts the node's CA) and plain HTTP, the
         * request arrives with the value; toward another allowed host, with the placeholder. The
         * servers' /quiet answers do not echo, so the value never comes back into the guest. */
        cr_expect_eq(sh(&sb, NULL,
                        "curl -sS --max-time 5 -H \"Authorization: Bearer $API_TOKEN\" "
                        "https://allowed.sbx.test/quiet/tls"),
                     0, "https to the secret's host");
        cr_expect_eq(sh(&sb, NULL,
                        "curl -sS --max-time 5 -H \"Authorization: Bearer $API_TOKEN\" "
                        "http://allowed.sbx.test/quiet/plain"),
                     0, "http to the secret's host");
        cr_expect_eq(sh(&sb, NULL,
                        "curl -sS --max-time 5 --cacert /tmp/inet-ca.pem -H \"Authorization: Bearer "
                        "$API_TOKEN\" https://other.sbx.test/quiet/other"),
                     0, "https to another allowed host");
        char path[700];
        size_t size;
        snprintf(path, sizeof(path), "%s/requests.log", inet_dir);
        cr_assert_eq(sbx_read_file(path, 1 << 20, &log, &size), 0);
        char want[200];
        snprintf(want, sizeof(want), "\"GET /quiet/tls HTTP/1.1\",\"Host: allowed.sbx.test\"");
        cr_expect_not_null(strstr(log, want), "%s", log);
        snprintf(want, sizeof(want), "Authorization: Bearer %s", SECRET);
        const char *tls = strstr(log, "/quiet/tls"), *plain = strstr(log, "/quiet/plain"),
                   *other = strstr(log, "/quiet/other");
        cr_assert(tls && plain && other, "requests missing from the fake server's log:\n%s", log);
        const char *tls_end = strchr(tls, '\n'), *plain_end = strchr(plain, '\n'),
                   *other_end = strchr(other, '\n');
        const char *hit = strstr(tls, want);
        cr_expect(hit && hit < tls_end, "the value did not arrive over TLS");
        hit = strstr(plain, want);
        cr_expect(hit && hit < plain_end, "the value did not arrive over plain HTTP");
        hit = strstr(other, want);
        cr_expect(!hit || hit > other_end, "the value went to a host it is not for");
        snprintf(want, sizeof(want), "Authorization: Bearer %s", placeholder);
        hit = strstr(other, want);
        cr_expect(hit && hit < other_end, "the other host did not get the placeholder");

        /* Nowhere in the guest: its processes' environments, its disk, its memory. */
        cr_assert_eq(sh(&sb, &environ_all, "sudo sh -c 'cat /proc/[0-9]*/environ' | tr '\\0' '\\n'"), 0);
        cr_expect_null(strstr(environ_all, SECRET), "the value is in a guest environment");
        cr_expect_not_null(strstr(environ_all, placeholder), "the placeholder should be (sanity check)");
        cr_assert_eq(sh(&sb, NULL, "sync"), 0);
        char disk[700], dump[700];
        snprintf(disk, sizeof(disk), "%s/sandboxes/%s/disk.ext4", A.dir, sb.id);
        snprintf(dump, sizeof(dump), "%s/sandboxes/%s/memory.dump", A.dir, sb.id);
        cr_expect_eq(count_in_file(disk, SECRET), 0, "the value is on the guest's disk");
        cr_assert_eq(dump_memory(&sb, dump, 768ull << 20), 0, "pmemsave failed");
        cr_expect_gt(count_in_file(dump, placeholder), 0,
                     "the placeholder should be in guest memory (sanity check)");
        cr_expect_eq(count_in_file(dump, SECRET), 0, "the value is in the guest's memory");
        unlink(dump);

        /* Nor in etcd, where it is sealed. */
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "ETCDCTL_API=3 etcdctl --endpoints=%s get '' --prefix | grep -a -c '%s'",
                 C.etcd->endpoint, SECRET);
        FILE *f = popen(cmd, "r");
        int count = -1;
        cr_assert_not_null(f);
        cr_expect_eq(fscanf(f, "%d", &count), 1);
        pclose(f);
        cr_expect_eq(count, 0, "the value is in etcd in plaintext");
        free(placeholder);
        free(log);
        free(environ_all);
        sbx_test_sandbox_done(&sb);
}
