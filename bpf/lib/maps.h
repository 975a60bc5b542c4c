/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps every Ambit capture program shares, and the layouts of their keys and values.
 *
 * Each program object (connect, peername, sockopt, sockops, redirect) includes this header;
 * the maps are pinned by name (LIBBPF_PIN_BY_NAME) under the loader's pin directory, so the
 * first object loaded creates them and the others reuse them. The runtime writes the same
 * layouts from TypeScript: runtime/src/capture/layout.ts mirrors this file byte for byte.
 *
 * Byte orders: addresses are always in network order (as the kernel hands them over);
 * ports are in host order in keys, and in network order in struct ambit_orig (ready to
 * write back into a sockaddr).
 */
#ifndef AMBIT_MAPS_H
#define AMBIT_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define AMBIT_AF_INET 2
#define AMBIT_AF_INET6 10

/* ---- ambit_config: where the node proxy listens ------------------------------------------ */

/* ambit_config.flags */
#define AMBIT_CFG_ENABLED 1  /* redirect meshed connects (0: programs stay attached, do nothing) */
#define AMBIT_CFG_SOCKHASH 2 /* short-circuit pod <-> proxy sockets through ambit_socks */

struct ambit_config {
  __u32 proxy_ip4;          /* outbound listener, IPv4 (network order); 0: no IPv4 redirect */
  __u32 proxy_ip6[4];       /* outbound listener, IPv6 (network order); all 0: no IPv6 redirect */
  __u16 proxy_port;         /* outbound listener port (host order) */
  __u16 flags;              /* AMBIT_CFG_* */
  __u32 pad0;
  __u32 pad1;
  __u64 proxy_cgroup_id;    /* offset 32 (struct size 48: runtime/src/capture/layout.ts) */    /* the proxy's own cgroup: its connects are never redirected */
  __u64 proxy_netns_cookie; /* the proxy's network namespace: part of every ambit_tuple key */
};

/* Array of one entry (key 0), written by the loader from the mesh config. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct ambit_config);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_config SEC(".maps");

/* ---- ambit_meshed: which destinations go through the proxy -------------------------------- */

/* ambit_meshed values */
#define AMBIT_DEST_MESHED 1 /* a connect() to it is redirected to the proxy */
#define AMBIT_DEST_LOCAL 2  /* a workload on this node: its sockets may enter ambit_socks */

struct ambit_dest_key {
  __u32 family; /* AMBIT_AF_INET or AMBIT_AF_INET6 */
  __u32 ip[4];  /* IPv4 in ip[0], the rest 0 */
  __u32 port;   /* host order; 0: any port (a workload address) */
};

/* Hash: service VIP:port (port set) and workload addresses (port 0) -> AMBIT_DEST_* flags.
   Replaced by the loader on every config change. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, struct ambit_dest_key);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_meshed SEC(".maps");

/* ---- original destinations ---------------------------------------------------------------- */

struct ambit_orig {
  __u32 family;       /* of the original destination */
  __u32 ip[4];        /* network order */
  __u16 port;         /* network order */
  __u16 pad;
  __u64 netns_cookie; /* the client's network namespace */
};

/* LRU hash: socket cookie of a redirected client socket -> where it asked to go.
   Written by connect4/6, read by getpeername4/6 and by sockops (which copies it to
   ambit_orig_by_tuple once the connection is established); deleted when the socket closes.
   LRU so that connects that never complete cannot fill it. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, struct ambit_orig);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_orig_by_cookie SEC(".maps");

/* A redirected connection as the proxy's accepted socket sees it. */
/* 56 bytes: netns 0, family 8, client_ip 12, proxy_ip 28, client_port 44, proxy_port 48. */
struct ambit_tuple {
  __u64 netns_cookie; /* the proxy's network namespace (the tuple is unique only within it) */
  __u32 family;
  __u32 client_ip[4];
  __u32 proxy_ip[4];
  __u32 client_port; /* host order */
  __u32 proxy_port;  /* host order */
  __u32 pad;
};

/* LRU hash: (proxy netns, client ip:port, proxy ip:port) -> original destination.
   Written by sockops when a redirected client connection is established, read by the
   cgroup/getsockopt program answering SO_ORIGINAL_DST on the proxy's accepted socket,
   deleted when either end closes. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct ambit_tuple);
  __type(value, struct ambit_orig);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_orig_by_tuple SEC(".maps");

/* ---- same-node short circuit --------------------------------------------------------------- */

/* A TCP socket by its own view of its connection, in its network namespace: a tuple is unique
   only within one netns, and a pod that can add addresses (NET_ADMIN in its netns) can make a
   connection whose tuple equals another workload's. The peer of a socket is the entry with local
   and remote swapped, in the peer's netns: the proxy's for a pod's socket, the one recorded in
   ambit_peer_netns for a socket of the proxy's netns (see there). */
/* 56 bytes: family 0, local_ip 4, remote_ip 20, local_port 36, remote_port 40, pad 44, netns_cookie 48. */
struct ambit_sock_key {
  __u32 family;
  __u32 local_ip[4];
  __u32 remote_ip[4];
  __u32 local_port;  /* host order */
  __u32 remote_port; /* host order */
  __u32 pad;
  __u64 netns_cookie; /* the socket's own network namespace */
};

/* Sockhash: established sockets between local workloads and the proxy, added by sockops;
   the kernel removes a socket when it closes. The sk_msg program (attached to this map)
   moves bytes written on one straight into its peer's receive queue. */
struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);
  __type(key, struct ambit_sock_key);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_socks SEC(".maps");

/* LRU hash: a socket of the proxy's netns (its ambit_sock_key) -> the netns of its peer, written
   by the peer (a pod's socket, in another netns) when it enters ambit_socks, with BPF_NOEXIST.
   A second netns claiming the same key turns the entry into 0 (AMBIT_NETNS_CONFLICT): that
   socket is never short-circuited, so a colliding tuple can neither read nor inject. No entry:
   the peer is in the proxy's netns too. Deleted when either end closes. */
#define AMBIT_NETNS_CONFLICT 0
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct ambit_sock_key);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_peer_netns SEC(".maps");

/* ambit_redirect_state values */
#define AMBIT_PATH_REDIRECT 1 /* the first write found the peer: every write is redirected */
#define AMBIT_PATH_STACK 2    /* the first write went through TCP: so do all later ones */

/* LRU hash: a socket in ambit_socks (its ambit_sock_key) -> AMBIT_PATH_*, decided at its first
   write and kept, so bytes never overtake earlier ones still in the TCP stack (a write made
   before the peer was in ambit_socks goes through TCP). Deleted when the socket closes. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct ambit_sock_key);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_redirect_state SEC(".maps");

/* ---- counters ------------------------------------------------------------------------------- */

enum ambit_stat {
  AMBIT_STAT_CONNECT_REDIRECTED = 0, /* connect()s rewritten to the proxy */
  AMBIT_STAT_CONNECT_DIRECT,         /* connect()s from enrolled pods left alone (not meshed) */
  AMBIT_STAT_ORIGDST_ANSWERED,       /* SO_ORIGINAL_DST answered from ambit_orig_by_tuple */
  AMBIT_STAT_PEERNAME_REWRITTEN,     /* getpeername() answered with the original destination */
  AMBIT_STAT_SOCKHASH_ADDED,         /* sockets added to ambit_socks */
  AMBIT_STAT_MSG_REDIRECTED,         /* writes moved to the peer by sk_msg */
  AMBIT_STAT_MSG_REDIRECTED_BYTES,   /* bytes in those writes */
  AMBIT_STAT_MSG_STACK,              /* writes by sockets in ambit_socks that went through TCP */
  AMBIT_STAT_CLOSED,                 /* closed sockets whose entries were removed */
  AMBIT_STAT_MAX,
};

/* Per-CPU array of AMBIT_STAT_MAX counters, read (summed) by the loader. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, AMBIT_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_stats SEC(".maps");

static __always_inline void ambit_count(enum ambit_stat stat, __u64 n) {
  __u32 key = stat;
  __u64 *value = bpf_map_lookup_elem(&ambit_stats, &key);
  if (value) *value += n;
}

static __always_inline struct ambit_config *ambit_config_get(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&ambit_config, &zero);
}

#endif
