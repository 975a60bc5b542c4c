/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Building an ambit_sock_key from the sock_ops and sk_msg contexts, and the peer's key. */
#ifndef AMBIT_SOCKKEY_H
#define AMBIT_SOCKKEY_H

#include "addr.h"

/* Fills `key` from the context's fields (sock_ops and sk_msg share their names and byte
   orders: remote_port is the network-order port in the upper half, local_port is host order).
   IPv4 peers of dual-stack sockets are keyed as IPv4, so both ends agree. The socket's network
   namespace is part of the key. */
#define AMBIT_SOCK_KEY(key, ctx)                                                           \
  do {                                                                                     \
    __builtin_memset(&(key), 0, sizeof(key));                                              \
    (key).netns_cookie = bpf_get_netns_cookie(ctx);                                        \
    (key).local_port = (ctx)->local_port;                                                  \
    (key).remote_port = bpf_ntohl((ctx)->remote_port);                                     \
    if ((ctx)->family == AMBIT_AF_INET) {                                                  \
      (key).family = AMBIT_AF_INET;                                                        \
      (key).local_ip[0] = (ctx)->local_ip4;                                                \
      (key).remote_ip[0] = (ctx)->remote_ip4;                                              \
    } else {                                                                               \
      __u32 l6[4] = {(ctx)->local_ip6[0], (ctx)->local_ip6[1], (ctx)->local_ip6[2],        \
                     (ctx)->local_ip6[3]};                                                 \
      __u32 r6[4] = {(ctx)->remote_ip6[0], (ctx)->remote_ip6[1], (ctx)->remote_ip6[2],     \
                     (ctx)->remote_ip6[3]};                                                \
      if (ambit_v4_mapped(r6)) {                                                           \
        (key).family = AMBIT_AF_INET;                                                      \
        (key).local_ip[0] = l6[3];                                                         \
        (key).remote_ip[0] = r6[3];                                                        \
      } else {                                                                             \
        (key).family = AMBIT_AF_INET6;                                                     \
        __builtin_memcpy((key).local_ip, l6, sizeof l6);                                   \
        __builtin_memcpy((key).remote_ip, r6, sizeof r6);                                  \
      }                                                                                    \
    }                                                                                      \
  } while (0)

/* The key under which the other end of `key`'s connection is stored, if it is in `netns`. */
static __always_inline void ambit_peer_key(struct ambit_sock_key *peer, const struct ambit_sock_key *key, __u64 netns) {
  peer->netns_cookie = netns;
  peer->pad = 0;
  peer->family = key->family;
  __builtin_memcpy(peer->local_ip, key->remote_ip, sizeof peer->local_ip);
  __builtin_memcpy(peer->remote_ip, key->local_ip, sizeof peer->remote_ip);
  peer->local_port = key->remote_port;
  peer->remote_port = key->local_port;
}

/*
 * The netns of the peer of socket `key`, or AMBIT_NETNS_CONFLICT when it must not be short-circuited:
 * a pod's socket talks to the proxy; a socket of the proxy's netns to the netns its peer recorded
 * (none: the proxy's own).
 */
static __always_inline __u64 ambit_peer_netns_of(const struct ambit_sock_key *key, __u64 proxy_netns) {
  if (key->netns_cookie != proxy_netns) return proxy_netns;
  __u64 *recorded = bpf_map_lookup_elem(&ambit_peer_netns, key);
  return recorded ? *recorded : proxy_netns;
}

#endif
