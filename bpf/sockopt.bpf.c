// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/getsockopt, attached to the proxy's cgroup: answers SO_ORIGINAL_DST (SOL_IP) and
 * IP6T_SO_ORIGINAL_DST (SOL_IPV6) on a socket the proxy accepted from a redirected client,
 * with the destination connect4/6 recorded — the same call, and the same answer, as after
 * a netfilter REDIRECT. Any other option, or a socket not in ambit_orig_by_tuple, keeps the
 * kernel's own answer (so nftables capture keeps working beside it).
 */
#include "lib/addr.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AMBIT_SOL_IP 0
#define AMBIT_SOL_IPV6 41
#define AMBIT_SO_ORIGINAL_DST 80

struct ambit_sockaddr_in {
  __u16 family;
  __u16 port; /* network order */
  __u32 addr; /* network order */
  __u8 zero[8];
};

struct ambit_sockaddr_in6 {
  __u16 family;
  __u16 port;
  __u32 flowinfo;
  __u32 addr[4];
  __u32 scope_id;
};

SEC("cgroup/getsockopt")
int ambit_getsockopt(struct bpf_sockopt *ctx) {
  if (ctx->optname != AMBIT_SO_ORIGINAL_DST) return 1;
  if (ctx->level != AMBIT_SOL_IP && ctx->level != AMBIT_SOL_IPV6) return 1;
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 1;

  /* The accepted socket: local = the proxy's listener, remote = the client. */
  struct ambit_tuple key = {};
  key.netns_cookie = bpf_get_netns_cookie(ctx);
  key.proxy_port = sk->src_port;
  key.client_port = bpf_ntohs(sk->dst_port);
  if (sk->family == AMBIT_AF_INET) {
    key.family = AMBIT_AF_INET;
    key.proxy_ip[0] = sk->src_ip4;
    key.client_ip[0] = sk->dst_ip4;
  } else if (sk->family == AMBIT_AF_INET6) {
    __u32 local[4] = {sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2], sk->src_ip6[3]};
    __u32 remote[4] = {sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3]};
    if (ambit_v4_mapped(remote)) {
      key.family = AMBIT_AF_INET;
      key.proxy_ip[0] = local[3];
      key.client_ip[0] = remote[3];
    } else {
      key.family = AMBIT_AF_INET6;
      __builtin_memcpy(key.proxy_ip, local, sizeof local);
      __builtin_memcpy(key.client_ip, remote, sizeof remote);
    }
  } else {
    return 1;
  }
  struct ambit_orig *orig = bpf_map_lookup_elem(&ambit_orig_by_tuple, &key);
  if (!orig) return 1;

  void *optval = ctx->optval;
  void *end = ctx->optval_end;
  if (ctx->level == AMBIT_SOL_IP) {
    struct ambit_sockaddr_in *sin = optval;
    if (orig->family != AMBIT_AF_INET || (void *)(sin + 1) > end) return 1;
    sin->family = AMBIT_AF_INET;
    sin->port = orig->port;
    sin->addr = orig->ip[0];
    __builtin_memset(sin->zero, 0, sizeof sin->zero);
    ctx->optlen = sizeof *sin;
  } else {
    struct ambit_sockaddr_in6 *sin6 = optval;
    if ((void *)(sin6 + 1) > end) return 1;
    sin6->family = AMBIT_AF_INET6;
    sin6->port = orig->port;
    sin6->flowinfo = 0;
    sin6->scope_id = 0;
    if (orig->family == AMBIT_AF_INET) {
      sin6->addr[0] = 0;
      sin6->addr[1] = 0;
      sin6->addr[2] = bpf_htonl(0x0000ffff);
      sin6->addr[3] = orig->ip[0];
    } else {
      sin6->addr[0] = orig->ip[0];
      sin6->addr[1] = orig->ip[1];
      sin6->addr[2] = orig->ip[2];
      sin6->addr[3] = orig->ip[3];
    }
    ctx->optlen = sizeof *sin6;
  }
  ctx->retval = 0;
  ambit_count(AMBIT_STAT_ORIGDST_ANSWERED, 1);
  return 1;
}
