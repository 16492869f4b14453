// SPDX-License-Identifier: GPL-2.0
/*
 * Gatehouse session programs: enhanced recording (execve, exit, file opens) and
 * per-session network rules (cgroup connect/sendmsg). A process belongs to a
 * session when its cgroup at depth `session_level` is a session cgroup (so
 * child cgroups cannot escape), or when it descends, by fork, from a process
 * that did (so moving to another cgroup does not escape while the session is
 * open). The helper (helper.c) fills the maps; these programs never decide
 * policy, they apply the rules they were given.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "gatehouse.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 session_level = 1;
/*
 * Ring buffer wakeups are batched: an event wakes the helper only once this
 * much is waiting (the helper sets it from the ring's size); below it the
 * helper finds events on its short poll timeout. A wakeup per event cost the
 * recorded process more than recording the event did.
 */
const volatile __u64 wakeup_bytes = 256 << 10;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct gh_session);
} sessions SEC(".maps");

/* tgid -> session cgroup id, for processes that leave the session cgroup. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct gh_lpm4);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} deny4 SEC(".maps"), allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct gh_lpm6);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} deny6 SEC(".maps"), allow6 SEC(".maps");

/* execve in flight, keyed by tgid: argv is read at entry, the result at exit. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct gh_exec_ev);
} execs SEC(".maps");

struct open_args {
	__u64 path;
	__u64 cgid; /* the session found at entry: exit needs only its lookup */
	__s32 flags;
	__u32 pad;
};

/*
 * Per thread, kept for the thread's life and marked unused (cgid 0) between
 * opens: no map insert and delete per open.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct open_args);
} opens SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gh_exec_ev);
} scratch SEC(".maps");

static __always_inline struct gh_session *find_session(__u64 *cgid)
{
	__u64 cg = bpf_get_current_ancestor_cgroup_id(session_level);
	struct gh_session *s = bpf_map_lookup_elem(&sessions, &cg);
	if (s) {
		*cgid = cg;
		return s;
	}
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 *p = bpf_map_lookup_elem(&tasks, &tgid);
	if (!p)
		return 0;
	cg = *p;
	s = bpf_map_lookup_elem(&sessions, &cg);
	if (s)
		*cgid = cg;
	return s;
}

static __always_inline void count_lost(struct gh_session *s)
{
	__sync_fetch_and_add(&s->lost, 1);
}

static __always_inline __u64 submit_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									    : BPF_RB_NO_WAKEUP;
}

static __always_inline void fill_hdr(struct gh_hdr *h, __u32 type, __u64 cgid)
{
	h->type = type;
	h->pid = bpf_get_current_pid_tgid() >> 32;
	h->cgid = cgid;
	h->ts = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0; /* a thread, not a process */
	__u64 cg;
	if (!find_session(&cg))
		return 0;
	__u32 tgid = child->tgid;
	bpf_map_update_elem(&tasks, &tgid, &cg, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	if (p->pid != p->tgid)
		return 0;
	__u64 cg;
	struct gh_session *s = find_session(&cg);
	__u32 tgid = p->tgid;
	if (s && (s->flags & GH_REC_COMMAND)) {
		struct gh_exit_ev *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (e) {
			fill_hdr(&e->h, GH_EV_EXIT, cg);
			e->code = p->exit_code;
			e->pad = 0;
			bpf_ringbuf_submit(e, submit_flags());
		} else {
			count_lost(s);
		}
	}
	bpf_map_delete_elem(&tasks, &tgid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(struct trace_event_raw_sys_enter *ctx)
{
	__u64 cg;
	struct gh_session *s = find_session(&cg);
	if (!s)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	/* Remember the process even if it moves cgroups after this exec. */
	bpf_map_update_elem(&tasks, &tgid, &cg, BPF_ANY);
	if (!(s->flags & GH_REC_COMMAND))
		return 0;
	__u32 zero = 0;
	struct gh_exec_ev *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	fill_hdr(&e->h, GH_EV_EXEC, cg);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ret = 0;
	e->truncated = 0;
	bpf_probe_read_user_str(e->file, sizeof(e->file), (const char *)ctx->args[0]);
	const char *const *argv = (const char *const *)ctx->args[1];
	__u32 off = 0;
	__u32 argc = 0;
	for (int i = 0; i < GH_MAX_ARGS; i++) {
		const char *arg = 0;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			break;
		if (off >= GH_ARGS_CAP) {
			e->truncated = 1;
			break;
		}
		long n = bpf_probe_read_user_str(&e->args[off & (GH_ARGS_CAP - 1)], GH_ARGS_CAP, arg);
		if (n <= 0)
			break;
		off += n;
		argc++;
		if (i == GH_MAX_ARGS - 1)
			e->truncated = 1;
	}
	e->argc = argc;
	e->args_len = off;
	bpf_map_update_elem(&execs, &tgid, e, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int on_execve_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct gh_exec_ev *e = bpf_map_lookup_elem(&execs, &tgid);
	if (!e)
		return 0;
	e->ret = ctx->ret;
	/* execvp's and env's PATH search: each miss is a failed execve, not a command. */
	if (e->ret == -2) {
		bpf_map_delete_elem(&execs, &tgid);
		return 0;
	}
	__u64 size = offsetof(struct gh_exec_ev, args) + (e->args_len & (GH_ARGS_BUF - 1));
	if (size > sizeof(*e))
		size = sizeof(*e);
	if (bpf_ringbuf_output(&events, e, size, submit_flags())) {
		struct gh_session *s = bpf_map_lookup_elem(&sessions, &e->h.cgid);
		if (s)
			count_lost(s);
	}
	bpf_map_delete_elem(&execs, &tgid);
	return 0;
}

/*
 * File opens: openat (what libc's open() uses), plus open and creat (older
 * binaries, static and non-glibc ones; x86_64 has them, arm64 does not: the
 * helper attaches those two only where the tracepoint exists) and openat2.
 * The path and flags are read at entry, the result at exit, keyed by thread.
 */
static __always_inline int open_enter(__u64 path, __s32 flags)
{
	__u64 cg;
	struct gh_session *s = find_session(&cg);
	if (!s || !(s->flags & GH_REC_DISK))
		return 0;
	struct open_args *a =
		bpf_task_storage_get(&opens, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!a)
		return 0;
	a->path = path;
	a->cgid = cg;
	a->flags = flags;
	return 0;
}

static __always_inline int open_exit(long ret)
{
	struct open_args *a = bpf_task_storage_get(&opens, bpf_get_current_task_btf(), 0, 0);
	if (!a || !a->cgid)
		return 0;
	__u64 cg = a->cgid;
	a->cgid = 0;
	/* Still open (a close in between drops the event). */
	struct gh_session *s = bpf_map_lookup_elem(&sessions, &cg);
	if (s) {
		struct gh_open_ev *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (e) {
			fill_hdr(&e->h, GH_EV_OPEN, cg);
			e->flags = a->flags;
			e->ret = ret;
			e->path[0] = 0;
			bpf_probe_read_user_str(e->path, sizeof(e->path), (const char *)a->path);
			bpf_ringbuf_submit(e, submit_flags());
		} else {
			count_lost(s);
		}
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(struct trace_event_raw_sys_enter *ctx)
{
	return open_enter(ctx->args[1], (__s32)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int on_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int on_openat2(struct trace_event_raw_sys_enter *ctx)
{
	/* struct open_how starts with its __u64 flags. */
	__u64 flags = 0;
	bpf_probe_read_user(&flags, sizeof(flags), (const void *)ctx->args[2]);
	return open_enter(ctx->args[1], (__s32)flags);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int on_openat2_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_open")
int on_open(struct trace_event_raw_sys_enter *ctx)
{
	return open_enter(ctx->args[0], (__s32)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_open")
int on_open_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

/* creat(path, mode) is open(path, O_CREAT | O_WRONLY | O_TRUNC, mode). */
#define GH_CREAT_FLAGS (0100 | 01 | 01000)

SEC("tracepoint/syscalls/sys_enter_creat")
int on_creat(struct trace_event_raw_sys_enter *ctx)
{
	return open_enter(ctx->args[0], GH_CREAT_FLAGS);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int on_creat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

static __always_inline int emit_net(struct gh_session *s, __u64 cg, __u8 op, __u8 family, __u32 proto,
				    __u16 port, const __u8 *addr, int alen, int denied, __u32 plen)
{
	if (!denied && !(s->flags & GH_REC_NETWORK))
		return 0;
	struct gh_net_ev *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(s);
		return 0;
	}
	fill_hdr(&e->h, GH_EV_NET, cg);
	e->op = op;
	e->family = family;
	e->denied = denied;
	e->rule_plen = plen;
	e->protocol = proto;
	e->port = port;
	e->pad = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	if (alen == 4)
		__builtin_memcpy(e->addr, addr, 4);
	else
		__builtin_memcpy(e->addr, addr, 16);
	bpf_ringbuf_submit(e, submit_flags());
	return 0;
}

static __always_inline int check4(struct bpf_sock_addr *ctx, struct gh_session *s, __u64 cg, __u32 ip, __u8 op)
{
	struct gh_lpm4 k = { .prefixlen = 64 + 32 };
	__builtin_memcpy(k.data, &cg, 8);
	__builtin_memcpy(k.data + 8, &ip, 4);
	int denied = 0;
	__u32 plen = 0;
	__u32 *v = bpf_map_lookup_elem(&deny4, &k);
	if (v) {
		denied = 1;
		plen = *v;
	} else if (s->flags & GH_ALLOW_ONLY) {
		v = bpf_map_lookup_elem(&allow4, &k);
		if (!v) {
			denied = 1;
			plen = GH_RULE_NOT_ALLOWED;
		} else {
			plen = *v;
		}
	}
	emit_net(s, cg, op, 4, ctx->protocol, bpf_ntohs((__u16)ctx->user_port), (const __u8 *)&ip, 4, denied, plen);
	return denied ? 0 : 1;
}

static __always_inline int on_addr4(struct bpf_sock_addr *ctx, __u8 op)
{
	__u64 cg;
	struct gh_session *s = find_session(&cg);
	if (!s)
		return 1;
	return check4(ctx, s, cg, ctx->user_ip4, op);
}

static __always_inline int on_addr6(struct bpf_sock_addr *ctx, __u8 op)
{
	__u64 cg;
	struct gh_session *s = find_session(&cg);
	if (!s)
		return 1;
	__u32 a[4];
	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	/* ::ffff:a.b.c.d reaches an IPv4 address: the IPv4 rules apply. */
	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff))
		return check4(ctx, s, cg, a[3], op);
	struct gh_lpm6 k = { .prefixlen = 64 + 128 };
	__builtin_memcpy(k.data, &cg, 8);
	__builtin_memcpy(k.data + 8, a, 16);
	int denied = 0;
	__u32 plen = 0;
	__u32 *v = bpf_map_lookup_elem(&deny6, &k);
	if (v) {
		denied = 1;
		plen = *v;
	} else if (s->flags & GH_ALLOW_ONLY) {
		v = bpf_map_lookup_elem(&allow6, &k);
		if (!v) {
			denied = 1;
			plen = GH_RULE_NOT_ALLOWED;
		} else {
			plen = *v;
		}
	}
	emit_net(s, cg, op, 6, ctx->protocol, bpf_ntohs((__u16)ctx->user_port), (const __u8 *)a, 16, denied, plen);
	return denied ? 0 : 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return on_addr4(ctx, 1);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	return on_addr6(ctx, 1);
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	return on_addr4(ctx, 2);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	return on_addr6(ctx, 2);
}
