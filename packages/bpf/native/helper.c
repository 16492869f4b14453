// SPDX-License-Identifier: Apache-2.0
/*
 * gatehouse-bpf-helper: loads the Gatehouse session programs, fills their
 * maps on request and streams what they report. One process per enforcer,
 * started by @gatehouse/bpf:
 *
 *   stdin   one command per line (tokens separated by one space):
 *             open ID FLAGS CGROUP_PATH
 *             rule ID CGID d|a 4|6 HEXADDR PREFIXLEN
 *             close ID CGID
 *             ping ID
 *   stdout  one JSON object per line: {"ev":"ready",...}, replies
 *           {"re":ID,"ok":true|false,...} and events {"ev":"exec"|"exit"|
 *           "open"|"net"|"lost",...}, in the order they happened.
 *
 * The helper never decides policy: Node sends the rules core computed. It
 * exits when stdin closes or its parent dies; its links are not pinned, so
 * the programs go with it (docs/decisions/0023-bpf-helper.md says why).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "gatehouse.h"
#include "gatehouse.skel.h"

#define MAX_SESSIONS 4096
/*
 * The programs wake the helper only when a batch of events is waiting (see
 * wakeup_bytes in gatehouse.bpf.c): the poll timeout bounds how late a lone
 * event is delivered. Lost counts are checked less often.
 */
#define POLL_MS 10
#define LOST_MS 200

static struct gatehouse *skel;
static struct ring_buffer *rb;
static struct {
	__u64 cgid;
	__u64 reported_lost;
} open_sessions[MAX_SESSIONS];
static int n_open;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void json_str(const char *s, size_t max)
{
	putchar('"');
	for (size_t i = 0; i < max && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			putchar('\\');
			putchar(c);
		} else if (c < 0x20 || c == 0x7f) {
			printf("\\u%04x", c);
		} else {
			putchar(c);
		}
	}
	putchar('"');
}

static void reply_err(const char *id, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("{\"re\":%s,\"ok\":false,\"error\":", id);
	json_str(msg, sizeof(msg));
	printf("}\n");
}

static int on_event(void *ctx, void *data, size_t size)
{
	(void)ctx;
	const struct gh_hdr *h = data;
	if (size < sizeof(*h))
		return 0;
	switch (h->type) {
	case GH_EV_EXEC: {
		const struct gh_exec_ev *e = data;
		printf("{\"ev\":\"exec\",\"cg\":%llu,\"pid\":%u,\"ppid\":%u,\"uid\":%u,\"ret\":%d,\"ts\":%llu,\"file\":",
		       (unsigned long long)h->cgid, h->pid, e->ppid, e->uid, e->ret, (unsigned long long)h->ts);
		json_str(e->file, sizeof(e->file));
		printf(",\"argv\":[");
		size_t len = e->args_len;
		size_t avail = size - offsetof(struct gh_exec_ev, args);
		if (len > avail)
			len = avail;
		size_t off = 0;
		for (unsigned i = 0; i < e->argc && off < len; i++) {
			if (i)
				putchar(',');
			json_str(e->args + off, len - off);
			off += strnlen(e->args + off, len - off) + 1;
		}
		printf("],\"truncated\":%s}\n", e->truncated ? "true" : "false");
		break;
	}
	case GH_EV_EXIT: {
		const struct gh_exit_ev *e = data;
		printf("{\"ev\":\"exit\",\"cg\":%llu,\"pid\":%u,\"ts\":%llu,\"status\":%d}\n", (unsigned long long)h->cgid,
		       h->pid, (unsigned long long)h->ts, e->code);
		break;
	}
	case GH_EV_OPEN: {
		const struct gh_open_ev *e = data;
		printf("{\"ev\":\"open\",\"cg\":%llu,\"pid\":%u,\"ts\":%llu,\"flags\":%d,\"ret\":%d,\"path\":",
		       (unsigned long long)h->cgid, h->pid, (unsigned long long)h->ts, e->flags, e->ret);
		json_str(e->path, sizeof(e->path));
		printf("}\n");
		break;
	}
	case GH_EV_NET: {
		const struct gh_net_ev *e = data;
		char addr[INET6_ADDRSTRLEN] = "";
		inet_ntop(e->family == 4 ? AF_INET : AF_INET6, e->addr, addr, sizeof(addr));
		printf("{\"ev\":\"net\",\"cg\":%llu,\"pid\":%u,\"ts\":%llu,\"op\":\"%s\",\"family\":%u,\"protocol\":%u,"
		       "\"addr\":\"%s\",\"port\":%u,\"denied\":%s",
		       (unsigned long long)h->cgid, h->pid, (unsigned long long)h->ts, e->op == 1 ? "connect" : "sendmsg",
		       e->family, e->protocol, addr, e->port, e->denied ? "true" : "false");
		if (e->denied || e->rule_plen)
			printf(",\"rule_prefix\":%u", e->rule_plen);
		printf("}\n");
		break;
	}
	default:
		break;
	}
	return 0;
}

static int find_open(__u64 cgid)
{
	for (int i = 0; i < n_open; i++)
		if (open_sessions[i].cgid == cgid)
			return i;
	return -1;
}

/* Lost events are counted per session in the kernel; report each increase. */
static void report_lost(int i)
{
	struct gh_session s;
	if (bpf_map__lookup_elem(skel->maps.sessions, &open_sessions[i].cgid, sizeof(__u64), &s, sizeof(s), 0))
		return;
	if (s.lost != open_sessions[i].reported_lost) {
		open_sessions[i].reported_lost = s.lost;
		printf("{\"ev\":\"lost\",\"cg\":%llu,\"total\":%llu}\n", (unsigned long long)open_sessions[i].cgid,
		       (unsigned long long)s.lost);
	}
}

static int hexbytes(const char *hex, __u8 *out, int n)
{
	if ((int)strlen(hex) != n * 2)
		return -1;
	for (int i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (__u8)v;
	}
	return 0;
}

/* Deletes every entry of an LPM trie whose key starts with cgid. */
static void purge_trie(struct bpf_map *m, size_t ksz, __u64 cgid)
{
	__u8 key[sizeof(struct gh_lpm6)], next[sizeof(struct gh_lpm6)];
	static __u8 doomed[16384][sizeof(struct gh_lpm6)];
	int n = 0;
	void *prev = NULL;
	while (n < 16384 && bpf_map__get_next_key(m, prev, next, ksz) == 0) {
		if (memcmp(next + 4, &cgid, 8) == 0)
			memcpy(doomed[n++], next, ksz);
		memcpy(key, next, ksz);
		prev = key;
	}
	for (int i = 0; i < n; i++)
		bpf_map__delete_elem(m, doomed[i], ksz, 0);
}

static void purge_tasks(__u64 cgid)
{
	__u32 key, next;
	static __u32 doomed[65536];
	int n = 0;
	void *prev = NULL;
	while (n < 65536 && bpf_map__get_next_key(skel->maps.tasks, prev, &next, sizeof(next)) == 0) {
		__u64 v;
		if (bpf_map__lookup_elem(skel->maps.tasks, &next, sizeof(next), &v, sizeof(v), 0) == 0 && v == cgid)
			doomed[n++] = next;
		key = next;
		prev = &key;
	}
	for (int i = 0; i < n; i++)
		bpf_map__delete_elem(skel->maps.tasks, &doomed[i], sizeof(__u32), 0);
}

static void cmd_open(const char *id, char *rest)
{
	char *flags_s = strtok(rest, " ");
	char *path = strtok(NULL, " ");
	if (!flags_s || !path)
		return reply_err(id, "usage: open ID FLAGS CGROUP_PATH");
	struct stat st;
	if (stat(path, &st) || !S_ISDIR(st.st_mode))
		return reply_err(id, "cgroup %s: %s", path, strerror(errno));
	if (n_open >= MAX_SESSIONS)
		return reply_err(id, "too many open sessions (%d)", MAX_SESSIONS);
	/* On cgroup v2 the cgroup id is the directory's inode number. */
	__u64 cgid = st.st_ino;
	struct gh_session s = { .flags = (__u32)strtoul(flags_s, NULL, 10) };
	if (bpf_map__update_elem(skel->maps.sessions, &cgid, sizeof(cgid), &s, sizeof(s), BPF_NOEXIST))
		return reply_err(id, "cgroup %s is already a session: %s", path, strerror(errno));
	open_sessions[n_open].cgid = cgid;
	open_sessions[n_open].reported_lost = 0;
	n_open++;
	printf("{\"re\":%s,\"ok\":true,\"cg\":%llu}\n", id, (unsigned long long)cgid);
}

static void cmd_rule(const char *id, char *rest)
{
	char *cg_s = strtok(rest, " ");
	char *kind = strtok(NULL, " ");
	char *fam = strtok(NULL, " ");
	char *hex = strtok(NULL, " ");
	char *plen_s = strtok(NULL, " ");
	if (!cg_s || !kind || !fam || !hex || !plen_s)
		return reply_err(id, "usage: rule ID CGID d|a 4|6 HEXADDR PREFIXLEN");
	__u64 cgid = strtoull(cg_s, NULL, 10);
	__u32 plen = (__u32)strtoul(plen_s, NULL, 10);
	int v6 = fam[0] == '6';
	int alen = v6 ? 16 : 4;
	if (find_open(cgid) < 0)
		return reply_err(id, "no open session %llu", (unsigned long long)cgid);
	if (plen > (__u32)alen * 8)
		return reply_err(id, "prefix length %u is too long", plen);
	struct bpf_map *m = kind[0] == 'd' ? (v6 ? skel->maps.deny6 : skel->maps.deny4)
					   : (v6 ? skel->maps.allow6 : skel->maps.allow4);
	struct gh_lpm6 k = { .prefixlen = 64 + plen };
	memcpy(k.data, &cgid, 8);
	if (hexbytes(hex, k.data + 8, alen))
		return reply_err(id, "bad address %s", hex);
	size_t ksz = v6 ? sizeof(struct gh_lpm6) : sizeof(struct gh_lpm4);
	if (bpf_map__update_elem(m, &k, ksz, &plen, sizeof(plen), BPF_ANY))
		return reply_err(id, "rule: %s", strerror(errno));
	printf("{\"re\":%s,\"ok\":true}\n", id);
}

static void cmd_close(const char *id, char *rest)
{
	char *cg_s = strtok(rest, " ");
	if (!cg_s)
		return reply_err(id, "usage: close ID CGID");
	__u64 cgid = strtoull(cg_s, NULL, 10);
	int i = find_open(cgid);
	if (i < 0)
		return reply_err(id, "no open session %llu", (unsigned long long)cgid);
	/* Everything the session produced so far goes out before the reply. */
	ring_buffer__consume(rb);
	report_lost(i);
	__u64 lost = open_sessions[i].reported_lost;
	bpf_map__delete_elem(skel->maps.sessions, &cgid, sizeof(cgid), 0);
	purge_trie(skel->maps.deny4, sizeof(struct gh_lpm4), cgid);
	purge_trie(skel->maps.allow4, sizeof(struct gh_lpm4), cgid);
	purge_trie(skel->maps.deny6, sizeof(struct gh_lpm6), cgid);
	purge_trie(skel->maps.allow6, sizeof(struct gh_lpm6), cgid);
	purge_tasks(cgid);
	open_sessions[i] = open_sessions[--n_open];
	printf("{\"re\":%s,\"ok\":true,\"lost\":%llu}\n", id, (unsigned long long)lost);
}

static void command(char *line)
{
	char *op = strtok(line, " ");
	char *id = strtok(NULL, " ");
	if (!op || !id || strspn(id, "0123456789") != strlen(id)) {
		printf("{\"ev\":\"error\",\"error\":\"unreadable command\"}\n");
		return;
	}
	char *rest = id + strlen(id) + 1;
	if (strcmp(op, "open") == 0)
		cmd_open(id, rest);
	else if (strcmp(op, "rule") == 0)
		cmd_rule(id, rest);
	else if (strcmp(op, "close") == 0)
		cmd_close(id, rest);
	else if (strcmp(op, "ping") == 0)
		printf("{\"re\":%s,\"ok\":true}\n", id);
	else
		reply_err(id, "unknown command %s", op);
}

static void fail(const char *stage, int err)
{
	printf("{\"ev\":\"error\",\"stage\":\"%s\",\"errno\":%d,\"error\":", stage, err < 0 ? -err : err);
	const char *m = strerror(err < 0 ? -err : err);
	json_str(m, strlen(m));
	printf("}\n");
	fflush(stdout);
	exit(1);
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* libbpf's own diagnostics go to stderr, which Node logs at debug level. */
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

int main(int argc, char **argv)
{
	const char *cgroup_root = NULL;
	unsigned level = 0;
	unsigned long ringbuf = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--cgroup-root") == 0)
			cgroup_root = argv[i + 1];
		else if (strcmp(argv[i], "--level") == 0)
			level = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--ringbuf-bytes") == 0)
			ringbuf = strtoul(argv[i + 1], NULL, 10);
	}
	if (!cgroup_root || level == 0) {
		fprintf(stderr, "usage: %s --cgroup-root CGROUP2_MOUNT --level SESSION_DEPTH [--ringbuf-bytes POW2]\n",
			argv[0]);
		return 2;
	}
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		return 1;
	static char outbuf[1 << 16];
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
	libbpf_set_print(quiet);

	skel = gatehouse__open();
	if (!skel)
		fail("open", errno);
	skel->rodata->session_level = level;
	/*
	 * Syscalls an architecture may not have (arm64 has no open or creat):
	 * attached below where their tracepoints exist, skipped elsewhere.
	 */
	struct bpf_program *optional[] = { skel->progs.on_open, skel->progs.on_open_exit, skel->progs.on_creat,
					   skel->progs.on_creat_exit };
	struct bpf_link **optional_links[] = { &skel->links.on_open, &skel->links.on_open_exit,
					       &skel->links.on_creat, &skel->links.on_creat_exit };
	const size_t n_optional = sizeof(optional) / sizeof(optional[0]);
	for (size_t i = 0; i < n_optional; i++)
		bpf_program__set_autoattach(optional[i], false);
	/* A power of two, at least a page; the default (16 MiB) is sized for build-like bursts. */
	if (ringbuf && bpf_map__set_max_entries(skel->maps.events, (__u32)ringbuf))
		fail("ringbuf-size", errno);
	/*
	 * Events wake the helper only past an eighth of the ring (at most 256 KiB);
	 * below that the poll timeout collects them, within POLL_MS.
	 */
	__u64 wakeup = (__u64)bpf_map__max_entries(skel->maps.events) / 8;
	skel->rodata->wakeup_bytes = wakeup < (256 << 10) ? wakeup : (256 << 10);
	int err = gatehouse__load(skel);
	if (err)
		fail("load", err);
	err = gatehouse__attach(skel); /* the tracepoints */
	if (err)
		fail("attach-tracepoints", err);
	char skipped[256] = "";
	size_t skipped_len = 0;
	for (size_t i = 0; i < n_optional; i++) {
		struct bpf_link *l = bpf_program__attach(optional[i]);
		int aerr = l ? 0 : errno;
		if (aerr == ENOENT) {
			/* The names are identifiers: no JSON escaping needed. */
			skipped_len += (size_t)snprintf(skipped + skipped_len, sizeof(skipped) - skipped_len, "%s\"%s\"",
						       skipped_len ? "," : "", bpf_program__name(optional[i]));
			continue;
		}
		if (aerr)
			fail("attach-tracepoints", aerr);
		*optional_links[i] = l;
	}
	int cgfd = open(cgroup_root, O_RDONLY | O_DIRECTORY);
	if (cgfd < 0)
		fail("cgroup-root", errno);
	/* At the root: a process that moves to any other cgroup is still seen. */
	struct bpf_program *cg_progs[] = { skel->progs.connect4, skel->progs.connect6, skel->progs.sendmsg4,
					   skel->progs.sendmsg6 };
	for (size_t i = 0; i < sizeof(cg_progs) / sizeof(cg_progs[0]); i++) {
		if (!bpf_program__attach_cgroup(cg_progs[i], cgfd))
			fail("attach-cgroup", errno);
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, NULL, NULL);
	if (!rb)
		fail("ringbuf", errno);
	printf("{\"ev\":\"ready\",\"version\":1,\"pid\":%d,\"level\":%u,\"libbpf\":\"%s\",\"skipped\":[%s]}\n",
	       getpid(), level, libbpf_version_string(), skipped);
	fflush(stdout);

	static char line[8192];
	size_t used = 0;
	long long lost_at = now_ms();
	struct pollfd fds[2] = { { .fd = 0, .events = POLLIN }, { .fd = ring_buffer__epoll_fd(rb), .events = POLLIN } };
	for (;;) {
		int n = poll(fds, 2, POLL_MS);
		if (n < 0 && errno != EINTR)
			fail("poll", errno);
		ring_buffer__consume(rb);
		if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(0, line + used, sizeof(line) - 1 - used);
			if (r <= 0)
				break; /* Node went away: unload everything */
			used += (size_t)r;
			char *nl;
			while ((nl = memchr(line, '\n', used))) {
				*nl = 0;
				command(line);
				size_t consumed = (size_t)(nl - line) + 1;
				memmove(line, nl + 1, used - consumed);
				used -= consumed;
			}
			if (used == sizeof(line) - 1)
				used = 0; /* an overlong line is dropped whole */
		}
		/* A map lookup per session: every LOST_MS, not every poll. */
		if (now_ms() - lost_at >= LOST_MS) {
			lost_at = now_ms();
			for (int i = 0; i < n_open; i++)
				report_lost(i);
		}
		fflush(stdout);
	}
	ring_buffer__free(rb);
	gatehouse__destroy(skel);
	return 0;
}
