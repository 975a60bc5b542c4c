// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/getpeername4 and cgroup/getpeername6, attached to each enrolled pod's cgroup:
 * a socket that connect4/6 redirected to the proxy reports the address it asked for
 * (the service VIP), not the proxy's, as its peer.
 */
#include "lib/addr.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline struct ambit_orig *original(void *ctx) {
  __u64 cookie = bpf_get_socket_cookie(ctx);
  return bpf_map_lookup_elem(&ambit_orig_by_cookie, &cookie);
}

SEC("cgroup/getpeername4")
int ambit_getpeername4(struct bpf_sock_addr *ctx) {
  struct ambit_orig *orig = original(ctx);
  if (!orig || orig->family != AMBIT_AF_INET) return 1;
  ctx->user_ip4 = orig->ip[0];
  ctx->user_port = orig->port;
  ambit_count(AMBIT_STAT_PEERNAME_REWRITTEN, 1);
  return 1;
}

SEC("cgroup/getpeername6")
int ambit_getpeername6(struct bpf_sock_addr *ctx) {
  struct ambit_orig *orig = original(ctx);
  if (!orig) return 1;
  if (orig->family == AMBIT_AF_INET) {
    /* A dual-stack socket redirected to an IPv4 destination: answer ::ffff:a.b.c.d. */
    ctx->user_ip6[0] = 0;
    ctx->user_ip6[1] = 0;
    ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
    ctx->user_ip6[3] = orig->ip[0];
  } else {
    ctx->user_ip6[0] = orig->ip[0];
    ctx->user_ip6[1] = orig->ip[1];
    ctx->user_ip6[2] = orig->ip[2];
    ctx->user_ip6[3] = orig->ip[3];
  }
  ctx->user_port = orig->port;
  ambit_count(AMBIT_STAT_PEERNAME_REWRITTEN, 1);
  return 1;
}
