/*
 * @ambit/addon: the few socket facts the node proxy needs and Node does not expose.
 *
 *   originalDst(fd)  -> { address, port, family } | null   SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST
 *   socketCookie(fd) -> bigint                               SO_COOKIE        (kernel >= 4.13)
 *   netnsCookie(fd)  -> bigint | null                        SO_NETNS_COOKIE  (kernel >= 5.14)
 *
 * Linux only. Plain C against node_api.h (N-API version 8), no other dependency.
 * Errors are thrown as Error objects whose `code` is the errno name (EBADF, ENOTSOCK, ...),
 * with `errno` (number) and `syscall` set like Node's own system errors.
 */
#ifndef __linux__
#error "@ambit/addon is Linux-only: it reads netfilter (SO_ORIGINAL_DST) and socket cookies"
#endif

#include "system-error.h"
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Values from the kernel's uapi headers, defined here so that old or partial headers still build. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h, level SOL_IP */
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h, level SOL_IPV6 */
#endif
#ifndef SOL_IP
#define SOL_IP 0
#endif
#ifndef SOL_IPV6
#define SOL_IPV6 41
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57 /* asm-generic/socket.h, kernel 4.13 */
#endif
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 /* asm-generic/socket.h, kernel 5.14 */
#endif

#define CHECK(env, call)                                                                           \
  do {                                                                                             \
    if ((call) != napi_ok) return throw_napi_failure((env), #call);                              \
  } while (0)

/* ---- errors ----------------------------------------------------------------------------------- */


/*
 * Throws Error("<api>(fd <fd>): <syscall>(<option>) failed: <CODE> (<strerror>)") with
 * .code = errno name, .errno = err and .syscall = syscall, like Node's system errors. Returns NULL.
 */
static napi_value throw_errno(napi_env env, int err, const char *api, const char *syscall,
                              const char *option, int fd) {
  char message[256];
  const char *name = errno_name(err);
  snprintf(message, sizeof message, "%s(fd %d): %s(%s) failed: %s (%s)", api, fd, syscall,
           option ? option : "", name, strerror(err));
  return throw_system_error(env, err, syscall, message);
}

static napi_value throw_napi_failure(napi_env env, const char *call) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    const napi_extended_error_info *info = NULL;
    napi_get_last_error_info(env, &info);
    char message[256];
    snprintf(message, sizeof message, "@ambit/addon internal error in %s: %s", call,
             info && info->error_message ? info->error_message : "unknown N-API failure");
    napi_throw_error(env, "ERR_AMBIT_ADDON_INTERNAL", message);
  }
  return NULL;
}

/* Reads argument 0 as a file descriptor: an integer in [0, INT_MAX]. Throws a TypeError/RangeError. */
static bool get_fd_arg(napi_env env, napi_callback_info info, const char *fn, int *fd_out) {
  size_t argc = 1;
  napi_value argv[1];
  char message[160];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi_failure(env, "napi_get_cb_info");
    return false;
  }
  napi_valuetype type = napi_undefined;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number) {
    snprintf(message, sizeof message, "%s(fd): fd must be a number (a socket's file descriptor)", fn);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return false;
  }
  double value = 0;
  napi_get_value_double(env, argv[0], &value);
  if (!(value >= 0 && value <= INT_MAX) || (double)(int)value != value) {
    snprintf(message, sizeof message, "%s(fd): fd must be an integer >= 0, got %g", fn, value);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return false;
  }
  *fd_out = (int)value;
  return true;
}

/* ---- originalDst -------------------------------------------------------------------------------- */

static bool is_v4_mapped(const struct in6_addr *a) { return IN6_IS_ADDR_V4MAPPED(a); }

static napi_value make_endpoint(napi_env env, int fd, int family, const void *addr, uint16_t port_be) {
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(family == 4 ? AF_INET : AF_INET6, addr, text, sizeof text) == NULL)
    return throw_errno(env, errno, "originalDst", "inet_ntop", NULL, fd);
  napi_value obj, address_v, port_v, family_v;
  CHECK(env, napi_create_object(env, &obj));
  CHECK(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address_v));
  CHECK(env, napi_create_uint32(env, ntohs(port_be), &port_v));
  CHECK(env, napi_create_uint32(env, (uint32_t)family, &family_v));
  CHECK(env, napi_set_named_property(env, obj, "address", address_v));
  CHECK(env, napi_set_named_property(env, obj, "port", port_v));
  CHECK(env, napi_set_named_property(env, obj, "family", family_v));
  return obj;
}

static napi_value null_value(napi_env env) {
  napi_value v;
  CHECK(env, napi_get_null(env, &v));
  return v;
}

/*
 * The destination a connection had before a netfilter NAT redirect (iptables REDIRECT/DNAT, nft
 * redirect/dnat) sent it to this socket. null when there is none:
 *   - ENOENT: conntrack has no entry for the socket (not tracked, not connected);
 *   - ENOPROTOOPT: conntrack is not loaded for that family, or not TCP/SCTP;
 *   - the entry's original destination is the socket's own local address (tracked but not NATed:
 *     a client connected to the listener directly);
 *   - a socket that is neither AF_INET nor AF_INET6 (e.g. AF_UNIX).
 * An AF_INET6 socket whose local address is v4-mapped (a dual-stack listener accepting an IPv4
 * client) is asked at SOL_IP, since its conntrack entry is IPv4; the answer then has family 4.
 */
static napi_value original_dst(napi_env env, napi_callback_info info) {
  int fd;
  if (!get_fd_arg(env, info, "originalDst", &fd)) return NULL;

  struct sockaddr_storage local;
  socklen_t local_len = sizeof local;
  memset(&local, 0, sizeof local);
  if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0)
    return throw_errno(env, errno, "originalDst", "getsockname", NULL, fd);

  bool ask_v4;
  if (local.ss_family == AF_INET) {
    ask_v4 = true;
  } else if (local.ss_family == AF_INET6) {
    ask_v4 = is_v4_mapped(&((struct sockaddr_in6 *)&local)->sin6_addr);
  } else {
    return null_value(env);
  }

  if (ask_v4) {
    struct sockaddr_in dst;
    socklen_t len = sizeof dst;
    memset(&dst, 0, sizeof dst);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) {
      int err = errno;
      if (err == ENOENT || err == ENOPROTOOPT) return null_value(env);
      return throw_errno(env, err, "originalDst", "getsockopt", "SO_ORIGINAL_DST", fd);
    }
    /* The local IPv4 address and port, whether the socket is AF_INET or v4-mapped AF_INET6. */
    struct in_addr local_addr;
    uint16_t local_port;
    if (local.ss_family == AF_INET) {
      local_addr = ((struct sockaddr_in *)&local)->sin_addr;
      local_port = ((struct sockaddr_in *)&local)->sin_port;
    } else {
      const struct sockaddr_in6 *l6 = (const struct sockaddr_in6 *)&local;
      memcpy(&local_addr, &l6->sin6_addr.s6_addr[12], 4);
      local_port = l6->sin6_port;
    }
    if (dst.sin_addr.s_addr == local_addr.s_addr && dst.sin_port == local_port)
      return null_value(env);
    return make_endpoint(env, fd, 4, &dst.sin_addr, dst.sin_port);
  }

  struct sockaddr_in6 dst6;
  socklen_t len6 = sizeof dst6;
  memset(&dst6, 0, sizeof dst6);
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst6, &len6) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOPROTOOPT) return null_value(env);
    return throw_errno(env, err, "originalDst", "getsockopt", "IP6T_SO_ORIGINAL_DST", fd);
  }
  const struct sockaddr_in6 *l6 = (const struct sockaddr_in6 *)&local;
  if (memcmp(&dst6.sin6_addr, &l6->sin6_addr, sizeof dst6.sin6_addr) == 0 &&
      dst6.sin6_port == l6->sin6_port)
    return null_value(env);
  return make_endpoint(env, fd, 6, &dst6.sin6_addr, dst6.sin6_port);
}

/* ---- cookies ------------------------------------------------------------------------------------ */

static napi_value get_cookie(napi_env env, napi_callback_info info, const char *fn, int optname,
                             const char *optlabel, bool null_if_unsupported) {
  int fd;
  if (!get_fd_arg(env, info, fn, &fd)) return NULL;
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (getsockopt(fd, SOL_SOCKET, optname, &cookie, &len) != 0) {
    int err = errno;
    if (null_if_unsupported && err == ENOPROTOOPT) return null_value(env);
    return throw_errno(env, err, fn, "getsockopt", optlabel, fd);
  }
  napi_value v;
  CHECK(env, napi_create_bigint_uint64(env, cookie, &v));
  return v;
}

/* The socket's cookie: a 64-bit id unique for the kernel's lifetime; eBPF reads it with
   bpf_get_socket_cookie(), so it keys maps shared with eBPF programs. */
static napi_value socket_cookie(napi_env env, napi_callback_info info) {
  return get_cookie(env, info, "socketCookie", SO_COOKIE, "SO_COOKIE", false);
}

/* The cookie of the socket's network namespace (bpf_get_netns_cookie()). null on kernels < 5.14. */
static napi_value netns_cookie(napi_env env, napi_callback_info info) {
  return get_cookie(env, info, "netnsCookie", SO_NETNS_COOKIE, "SO_NETNS_COOKIE", true);
}

/* ---- module ------------------------------------------------------------------------------------- */

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"originalDst", NULL, original_dst, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketCookie", NULL, socket_cookie, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsCookie", NULL, netns_cookie, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    return throw_napi_failure(env, "napi_define_properties");
  return exports;
}
