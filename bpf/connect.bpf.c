// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/connect4 and cgroup/connect6, attached to each enrolled pod's cgroup.
 *
 * A TCP connect() to a meshed destination (a service VIP:port or a mesh workload address,
 * per ambit_meshed) is rewritten to the node proxy's outbound listener, and the destination
 * asked for is kept in ambit_orig_by_cookie under the socket's cookie (with the client's
 * netns cookie), for getpeername and for the proxy's SO_ORIGINAL_DST. Anything else —
 * UDP, destinations outside the mesh, the proxy itself, connects from the proxy's own
 * cgroup — is left alone.
 */
#include "lib/addr.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AMBIT_SOCK_STREAM 1

/* Records where the socket wanted to go; false when the map is full (then: no redirect). */
static __always_inline bool remember(void *ctx, __u32 family, const __u32 ip[4], __u16 port_be) {
  struct ambit_orig orig = {};
  orig.family = family;
  orig.ip[0] = ip[0];
  orig.ip[1] = ip[1];
  orig.ip[2] = ip[2];
  orig.ip[3] = ip[3];
  orig.port = port_be;
  orig.netns_cookie = bpf_get_netns_cookie(ctx);
  __u64 cookie = bpf_get_socket_cookie(ctx);
  return bpf_map_update_elem(&ambit_orig_by_cookie, &cookie, &orig, BPF_ANY) == 0;
}

static __always_inline bool from_proxy(const struct ambit_config *cfg) {
  return cfg->proxy_cgroup_id != 0 && bpf_get_current_cgroup_id() == cfg->proxy_cgroup_id;
}

SEC("cgroup/connect4")
int ambit_connect4(struct bpf_sock_addr *ctx) {
  if (ctx->type != AMBIT_SOCK_STREAM) return 1;
  struct ambit_config *cfg = ambit_config_get();
  if (!cfg || !(cfg->flags & AMBIT_CFG_ENABLED) || cfg->proxy_ip4 == 0) return 1;
  if (from_proxy(cfg)) return 1;

  __u32 ip[4] = {ctx->user_ip4, 0, 0, 0};
  __u16 port_be = (__u16)ctx->user_port;
  __u32 port = bpf_ntohs(port_be);
  if (ip[0] == cfg->proxy_ip4 && port == cfg->proxy_port) return 1;
  if (!(ambit_dest_flags(AMBIT_AF_INET, ip, port) & AMBIT_DEST_MESHED)) {
    ambit_count(AMBIT_STAT_CONNECT_DIRECT, 1);
    return 1;
  }
  if (!remember(ctx, AMBIT_AF_INET, ip, port_be)) return 1;
  ctx->user_ip4 = cfg->proxy_ip4;
  ctx->user_port = bpf_htons(cfg->proxy_port);
  ambit_count(AMBIT_STAT_CONNECT_REDIRECTED, 1);
  return 1;
}

SEC("cgroup/connect6")
int ambit_connect6(struct bpf_sock_addr *ctx) {
  if (ctx->type != AMBIT_SOCK_STREAM) return 1;
  struct ambit_config *cfg = ambit_config_get();
  if (!cfg || !(cfg->flags & AMBIT_CFG_ENABLED)) return 1;
  if (from_proxy(cfg)) return 1;

  __u32 ip[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
  __u16 port_be = (__u16)ctx->user_port;
  __u32 port = bpf_ntohs(port_be);
  /* An IPv4 destination on a dual-stack socket (::ffff:a.b.c.d) goes through the IPv4 rules. */
  bool mapped = ambit_v4_mapped(ip);
  if (mapped) {
    if (cfg->proxy_ip4 == 0) return 1;
    __u32 ip4[4] = {ip[3], 0, 0, 0};
    if (ip4[0] == cfg->proxy_ip4 && port == cfg->proxy_port) return 1;
    if (!(ambit_dest_flags(AMBIT_AF_INET, ip4, port) & AMBIT_DEST_MESHED)) {
      ambit_count(AMBIT_STAT_CONNECT_DIRECT, 1);
      return 1;
    }
    if (!remember(ctx, AMBIT_AF_INET, ip4, port_be)) return 1;
    ctx->user_ip6[3] = cfg->proxy_ip4;
    ctx->user_port = bpf_htons(cfg->proxy_port);
    ambit_count(AMBIT_STAT_CONNECT_REDIRECTED, 1);
    return 1;
  }

  __u32 zero[4] = {0, 0, 0, 0};
  if (ambit_ip_eq(cfg->proxy_ip6, zero)) return 1;
  if (ambit_ip_eq(ip, cfg->proxy_ip6) && port == cfg->proxy_port) return 1;
  if (!(ambit_dest_flags(AMBIT_AF_INET6, ip, port) & AMBIT_DEST_MESHED)) {
    ambit_count(AMBIT_STAT_CONNECT_DIRECT, 1);
    return 1;
  }
  if (!remember(ctx, AMBIT_AF_INET6, ip, port_be)) return 1;
  ctx->user_ip6[0] = cfg->proxy_ip6[0];
  ctx->user_ip6[1] = cfg->proxy_ip6[1];
  ctx->user_ip6[2] = cfg->proxy_ip6[2];
  ctx->user_ip6[3] = cfg->proxy_ip6[3];
  ctx->user_port = bpf_htons(cfg->proxy_port);
  ambit_count(AMBIT_STAT_CONNECT_REDIRECTED, 1);
  return 1;
}
