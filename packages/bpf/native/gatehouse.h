/* Shared between the BPF programs (gatehouse.bpf.c) and the helper (helper.c). */
#ifndef GATEHOUSE_H
#define GATEHOUSE_H

/* Session policy flags (sessions map value). */
#define GH_REC_COMMAND 1u
#define GH_REC_DISK 2u
#define GH_REC_NETWORK 4u
/* The session has an allow list: destinations outside it are refused. */
#define GH_ALLOW_ONLY 8u

#define GH_EV_EXEC 1
#define GH_EV_EXIT 2
#define GH_EV_OPEN 3
#define GH_EV_NET 4

#define GH_ARGS_BUF 4096
#define GH_ARGS_CAP 2048 /* offsets stay below this; one arg reads at most this much */
#define GH_MAX_ARGS 64
#define GH_PATH_MAX 512

/* No rule: refused because the allow list does not contain the destination. */
#define GH_RULE_NOT_ALLOWED 255

struct gh_session {
	__u32 flags;
	__u32 pad;
	__u64 lost;
};

struct gh_hdr {
	__u32 type;
	__u32 pid;
	__u64 cgid;
	__u64 ts;
};

struct gh_exec_ev {
	struct gh_hdr h;
	__u32 ppid;
	__u32 uid;
	__s32 ret;
	__u32 argc;
	__u32 args_len;
	__u32 truncated;
	char file[256];
	char args[GH_ARGS_BUF];
};

struct gh_exit_ev {
	struct gh_hdr h;
	__s32 code;
	__u32 pad;
};

struct gh_open_ev {
	struct gh_hdr h;
	__s32 flags;
	__s32 ret;
	char path[GH_PATH_MAX];
};

struct gh_net_ev {
	struct gh_hdr h;
	__u8 op; /* 1 connect, 2 sendmsg */
	__u8 family; /* 4 or 6 */
	__u8 denied;
	__u8 rule_plen;
	__u32 protocol;
	__u16 port;
	__u16 pad;
	__u8 addr[16];
};

/* LPM keys: prefixlen covers the session cgroup id (64 bits) then the address. */
struct gh_lpm4 {
	__u32 prefixlen;
	__u8 data[12];
};
struct gh_lpm6 {
	__u32 prefixlen;
	__u8 data[24];
};

#endif
