// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockops, attached to each enrolled pod's cgroup and to the proxy's cgroup.
 *
 *   established, client side of a redirected connect: copies the original destination from
 *     ambit_orig_by_cookie to ambit_orig_by_tuple, keyed as the proxy's accepted socket will
 *     see the connection (so cgroup/getsockopt can answer SO_ORIGINAL_DST);
 *   established, either side: a socket between a local workload and the proxy (or two local
 *     workloads) enters ambit_socks, where the sk_msg program short-circuits its writes;
 *     (a pod's socket also records its netns for its peer of the proxy's netns: ambit_peer_netns);
 *   close: removes the socket's entries from ambit_orig_by_cookie, ambit_orig_by_tuple,
 *     ambit_peer_netns and ambit_redirect_state (the kernel removes it from ambit_socks itself).
 */
#include "lib/sockkey.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AMBIT_TCP_CLOSE 7

static __always_inline bool is_proxy_listener(const struct ambit_config *cfg, const struct ambit_sock_key *k,
                                              bool local) {
  const __u32 *ip = local ? k->local_ip : k->remote_ip;
  __u32 port = local ? k->local_port : k->remote_port;
  if (port != cfg->proxy_port) return false;
  if (k->family == AMBIT_AF_INET) return ip[0] == cfg->proxy_ip4 && cfg->proxy_ip4 != 0;
  __u32 zero[4] = {0, 0, 0, 0};
  return !ambit_ip_eq(cfg->proxy_ip6, zero) && ambit_ip_eq(ip, cfg->proxy_ip6);
}

static __always_inline bool is_loopback(const struct ambit_sock_key *k) {
  if (k->family == AMBIT_AF_INET) return ambit_loopback4(k->local_ip[0]) || ambit_loopback4(k->remote_ip[0]);
  return ambit_loopback6(k->local_ip) || ambit_loopback6(k->remote_ip);
}

/* Sockets worth short-circuiting: one end is the proxy's listener or a workload of this node.
   Loopback never enters (the same 127.0.0.1 tuple can exist in many network namespaces). */
static __always_inline bool short_circuit(const struct ambit_config *cfg, const struct ambit_sock_key *k) {
  if (!(cfg->flags & AMBIT_CFG_SOCKHASH) || is_loopback(k)) return false;
  if (is_proxy_listener(cfg, k, true) || is_proxy_listener(cfg, k, false)) return true;
  return (ambit_dest_flags(k->family, k->local_ip, 0) & AMBIT_DEST_LOCAL) ||
         (ambit_dest_flags(k->family, k->remote_ip, 0) & AMBIT_DEST_LOCAL);
}

/* The proxy-side view of a redirected client socket `k` (client = local end). */
static __always_inline void proxy_tuple(struct ambit_tuple *t, const struct ambit_config *cfg,
                                        const struct ambit_sock_key *k) {
  __builtin_memset(t, 0, sizeof *t);
  t->netns_cookie = cfg->proxy_netns_cookie;
  t->family = k->family;
  __builtin_memcpy(t->client_ip, k->local_ip, sizeof t->client_ip);
  __builtin_memcpy(t->proxy_ip, k->remote_ip, sizeof t->proxy_ip);
  t->client_port = k->local_port;
  t->proxy_port = k->remote_port;
}

/* A pod's socket tells its peer in the proxy's netns where it is; a second claimant makes it a conflict. */
static __always_inline void record_netns(const struct ambit_config *cfg, const struct ambit_sock_key *key) {
  if (key->netns_cookie == cfg->proxy_netns_cookie) return;
  struct ambit_sock_key peer;
  ambit_peer_key(&peer, key, cfg->proxy_netns_cookie);
  __u64 mine = key->netns_cookie;
  if (bpf_map_update_elem(&ambit_peer_netns, &peer, &mine, BPF_NOEXIST) == 0) return;
  __u64 *claimed = bpf_map_lookup_elem(&ambit_peer_netns, &peer);
  if (claimed && *claimed != mine) {
    __u64 conflict = AMBIT_NETNS_CONFLICT;
    bpf_map_update_elem(&ambit_peer_netns, &peer, &conflict, BPF_EXIST);
  }
}

/* Drops what a closing socket recorded (a pod's, if still its own) or what was recorded for it (the proxy's). */
static __always_inline void forget_netns(const struct ambit_config *cfg, const struct ambit_sock_key *key) {
  if (key->netns_cookie == cfg->proxy_netns_cookie) {
    bpf_map_delete_elem(&ambit_peer_netns, key);
    return;
  }
  struct ambit_sock_key peer;
  ambit_peer_key(&peer, key, cfg->proxy_netns_cookie);
  __u64 *claimed = bpf_map_lookup_elem(&ambit_peer_netns, &peer);
  if (claimed && *claimed == key->netns_cookie) bpf_map_delete_elem(&ambit_peer_netns, &peer);
}

static __always_inline void established(struct bpf_sock_ops *skops, const struct ambit_config *cfg, bool active) {
  struct ambit_sock_key key;
  AMBIT_SOCK_KEY(key, skops);
  bool watch = false;

  if (active) {
    __u64 cookie = bpf_get_socket_cookie(skops);
    struct ambit_orig *orig = bpf_map_lookup_elem(&ambit_orig_by_cookie, &cookie);
    if (orig) {
      struct ambit_tuple t;
      proxy_tuple(&t, cfg, &key);
      struct ambit_orig copy = *orig;
      bpf_map_update_elem(&ambit_orig_by_tuple, &t, &copy, BPF_ANY);
      watch = true;
    }
  }
  if (short_circuit(cfg, &key) && bpf_sock_hash_update(skops, &ambit_socks, &key, BPF_ANY) == 0) {
    ambit_count(AMBIT_STAT_SOCKHASH_ADDED, 1);
    record_netns(cfg, &key);
    watch = true;
  }
  /* The proxy's accepted socket of a redirected connection: its close removes the tuple too. */
  if (!active && is_proxy_listener(cfg, &key, true)) watch = true;
  if (watch) bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

static __always_inline void closed(struct bpf_sock_ops *skops, const struct ambit_config *cfg) {
  struct ambit_sock_key key;
  AMBIT_SOCK_KEY(key, skops);
  struct ambit_tuple t;
  __u64 cookie = bpf_get_socket_cookie(skops);
  /* Client side: its cookie entry, and the tuple the proxy would look up. */
  if (bpf_map_delete_elem(&ambit_orig_by_cookie, &cookie) == 0) {
    proxy_tuple(&t, cfg, &key);
    bpf_map_delete_elem(&ambit_orig_by_tuple, &t);
  }
  /* Proxy side: the same tuple seen from the accepted socket. */
  if (is_proxy_listener(cfg, &key, true)) {
    struct ambit_sock_key client;
    ambit_peer_key(&client, &key, key.netns_cookie);
    proxy_tuple(&t, cfg, &client);
    t.netns_cookie = bpf_get_netns_cookie(skops);
    bpf_map_delete_elem(&ambit_orig_by_tuple, &t);
  }
  bpf_map_delete_elem(&ambit_redirect_state, &key);
  forget_netns(cfg, &key);
  ambit_count(AMBIT_STAT_CLOSED, 1);
}

SEC("sockops")
int ambit_sockops(struct bpf_sock_ops *skops) {
  if (skops->family != AMBIT_AF_INET && skops->family != AMBIT_AF_INET6) return 1;
  struct ambit_config *cfg = ambit_config_get();
  if (!cfg) return 1;
  switch (skops->op) {
    case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
      established(skops, cfg, true);
      break;
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
      established(skops, cfg, false);
      break;
    case BPF_SOCK_OPS_STATE_CB:
      if (skops->args[1] == AMBIT_TCP_CLOSE) closed(skops, cfg);
      break;
    default:
      break;
  }
  return 1;
}
