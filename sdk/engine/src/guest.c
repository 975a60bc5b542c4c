/*
 * The JavaScript guest of the ambit:filter@0.2.0 world: QuickJS, bound by hand.
 *
 * One core module holds the engine and these bindings. `ambitfilter build` runs
 * `ambit-init` once with the filter's bundled JavaScript and snapshots the module's
 * memory, so an instance starts with the filter already evaluated.
 *
 * Host -> guest (exports, canonical ABI): `configure` and one function per phase.
 * Each calls the matching function of the handler object the bundle defined
 * (`globalThis.__ambitHandler`), with the borrowed resource handles as numbers.
 *
 * Guest -> host (imports): the JavaScript side reaches the host through the
 * functions of `globalThis.__ambit`, one native function per WIT function. Values
 * cross as strings and numbers only; records come back as arrays. Header reads take
 * one call each: nothing of a request is copied unless the filter asks for it.
 *
 * An exception a handler does not catch is reported with its stack
 * (`report-error`), then the call traps: the host applies the binding's failure
 * policy and replaces the instance.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quickjs.h"

#define TYPES "ambit:filter/types@0.2.0"
#define HOST "ambit:filter/host@0.2.0"
#define HANDLER "ambit:filter/handler@0.2.0"
#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

/* The JavaScript stack QuickJS may use before it throws a RangeError; the linker's
 * stack (build.sh) is larger, so deep recursion is an exception, not a crash. */
#define JS_STACK_BYTES (192 * 1024)

/* ------------------------------------------------------------------------------ */
/* Imports                                                                          */

/* [method]context.* */
IMPORT(TYPES, "[method]context.direction") extern int32_t ctx_direction(int32_t);
IMPORT(TYPES, "[method]context.source") extern void ctx_source(int32_t, void *);
IMPORT(TYPES, "[method]context.destination") extern void ctx_destination(int32_t, void *);
IMPORT(TYPES, "[method]context.source-key") extern int32_t ctx_source_key(int32_t);
IMPORT(TYPES, "[method]context.destination-key") extern int32_t ctx_destination_key(int32_t);
IMPORT(TYPES, "[method]context.service") extern void ctx_service(int32_t, void *);
IMPORT(TYPES, "[method]context.route") extern void ctx_route(int32_t, void *);
IMPORT(TYPES, "[method]context.request-id") extern void ctx_request_id(int32_t, void *);
IMPORT(TYPES, "[method]context.attempt") extern int32_t ctx_attempt(int32_t);
IMPORT(TYPES, "[method]context.tls") extern void ctx_tls(int32_t, void *);
IMPORT(TYPES, "[resource-drop]context") extern void ctx_drop(int32_t);

/* [method]request-head.* */
IMPORT(TYPES, "[method]request-head.method") extern void req_method(int32_t, void *);
IMPORT(TYPES, "[method]request-head.scheme") extern void req_scheme(int32_t, void *);
IMPORT(TYPES, "[method]request-head.authority") extern void req_authority(int32_t, void *);
IMPORT(TYPES, "[method]request-head.path") extern void req_path(int32_t, void *);
IMPORT(TYPES, "[method]request-head.set-method") extern void req_set_method(int32_t, const char *, size_t);
IMPORT(TYPES, "[method]request-head.set-authority") extern void req_set_authority(int32_t, const char *, size_t);
IMPORT(TYPES, "[method]request-head.set-path") extern void req_set_path(int32_t, const char *, size_t);
IMPORT(TYPES, "[method]request-head.get") extern void req_get(int32_t, const char *, size_t, void *);
IMPORT(TYPES, "[method]request-head.get-all") extern void req_get_all(int32_t, const char *, size_t, void *);
IMPORT(TYPES, "[method]request-head.has") extern int32_t req_has(int32_t, const char *, size_t);
IMPORT(TYPES, "[method]request-head.set") extern void req_set(int32_t, const char *, size_t, const char *, size_t);
IMPORT(TYPES, "[method]request-head.append") extern void req_append(int32_t, const char *, size_t, const char *, size_t);
IMPORT(TYPES, "[method]request-head.remove") extern void req_remove(int32_t, const char *, size_t);
IMPORT(TYPES, "[method]request-head.size") extern int32_t req_size(int32_t);
IMPORT(TYPES, "[method]request-head.entries") extern void req_entries(int32_t, void *);
IMPORT(TYPES, "[resource-drop]request-head") extern void req_drop(int32_t);

/* [method]response-head.* */
IMPORT(TYPES, "[method]response-head.status") extern int32_t res_status(int32_t);
IMPORT(TYPES, "[method]response-head.set-status") extern void res_set_status(int32_t, int32_t);
IMPORT(TYPES, "[method]response-head.get") extern void res_get(int32_t, const char *, size_t, void *);
IMPORT(TYPES, "[method]response-head.get-all") extern void res_get_all(int32_t, const char *, size_t, void *);
IMPORT(TYPES, "[method]response-head.has") extern int32_t res_has(int32_t, const char *, size_t);
IMPORT(TYPES, "[method]response-head.set") extern void res_set(int32_t, const char *, size_t, const char *, size_t);
IMPORT(TYPES, "[method]response-head.append") extern void res_append(int32_t, const char *, size_t, const char *, size_t);
IMPORT(TYPES, "[method]response-head.remove") extern void res_remove(int32_t, const char *, size_t);
IMPORT(TYPES, "[method]response-head.size") extern int32_t res_size(int32_t);
IMPORT(TYPES, "[method]response-head.entries") extern void res_entries(int32_t, void *);
IMPORT(TYPES, "[resource-drop]response-head") extern void res_drop(int32_t);

/* host */
IMPORT(HOST, "log") extern void host_log(int32_t, const char *, size_t);
IMPORT(HOST, "counter-add") extern void host_counter_add(const char *, size_t, int32_t);
IMPORT(HOST, "now") extern double host_now(void);
IMPORT(HOST, "monotonic") extern double host_monotonic(void);
IMPORT(HOST, "random") extern double host_random(void);
IMPORT(HOST, "shared-get") extern void host_shared_get(const char *, size_t, void *);
IMPORT(HOST, "shared-set") extern int32_t host_shared_set(const char *, size_t, const char *, size_t, int32_t);
IMPORT(HOST, "shared-add") extern double host_shared_add(const char *, size_t, double);
IMPORT(HOST, "delay-request") extern void host_delay_request(int32_t);
IMPORT(HOST, "route-to-subset") extern void host_route_to_subset(const char *, size_t);
IMPORT(HOST, "set-per-try-timeout") extern void host_set_per_try_timeout(int32_t);
IMPORT(HOST, "upstream-error") extern void host_upstream_error(void *);
IMPORT(HOST, "upstream-load") extern void host_upstream_load(void *);
IMPORT(HOST, "report-error") extern void host_report_error(const char *, size_t);

/* ------------------------------------------------------------------------------ */
/* Memory the host writes into                                                      */

/* Allocations the host makes in this module (strings and lists it returns). */
EXPORT("cabi_realloc")
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
  (void)old_size;
  if (new_size == 0) return (void *)align;
  void *p = realloc(old, new_size);
  if (!p) __builtin_trap();
  return p;
}

static void release(void *p, size_t len) {
  if (len) free(p);
}

/* Where imports return what does not fit in one value (a peer record is the largest). */
static _Alignas(8) uint8_t ret_area[64];

#define U8(p, off) (*(uint8_t *)((uint8_t *)(p) + (off)))
#define U16(p, off) (*(uint16_t *)((uint8_t *)(p) + (off)))
#define U32(p, off) (*(uint32_t *)((uint8_t *)(p) + (off)))
#define PTR(p, off) ((char *)(uintptr_t)U32(p, off))

/* ------------------------------------------------------------------------------ */
/* Engine state, made by ambit-init and kept in the snapshot                        */

static JSRuntime *rt;
static JSContext *jc;
static JSValue handler_obj, fn_configure, fn_connection, fn_request, fn_response;
static JSAtom at_kind, at_status, at_headers, at_body, at_delay, at_reason, at_name, at_phases, at_invalid, at_stack, at_length;

/* ------------------------------------------------------------------------------ */
/* Values                                                                           */

/* A string the host allocated, as a JavaScript string; frees the host's copy. */
static JSValue take_string(const char *p, size_t len) {
  JSValue s = JS_NewStringLen(jc, p, len);
  release((void *)p, len);
  return s;
}

/* option<string> at `p`: discriminant, then the string at +4. */
static JSValue take_option_string(const void *p) {
  if (!U8(p, 0)) return JS_UNDEFINED;
  return take_string(PTR(p, 4), U32(p, 8));
}

/* Arguments are strings: anything else is converted as JavaScript would. */
typedef struct {
  const char *ptr;
  size_t len;
} text;

static bool arg_text(JSContext *c, JSValueConst v, text *out) {
  out->ptr = JS_ToCStringLen(c, &out->len, v);
  return out->ptr != NULL;
}

static void free_text(JSContext *c, text *t) {
  if (t->ptr) JS_FreeCString(c, t->ptr);
  t->ptr = NULL;
}

static int32_t arg_i32(JSContext *c, JSValueConst v) {
  int32_t n = 0;
  JS_ToInt32(c, &n, v);
  return n;
}

static JSValue take_string_list(const void *p) {
  char *items = PTR(p, 0);
  uint32_t n = U32(p, 4);
  JSValue arr = JS_NewArray(jc);
  for (uint32_t i = 0; i < n; i++) {
    JS_SetPropertyUint32(jc, arr, i, take_string(PTR(items, i * 8), U32(items, i * 8 + 4)));
  }
  release(items, n);
  return arr;
}

static JSValue take_entries(const void *p) {
  char *items = PTR(p, 0);
  uint32_t n = U32(p, 4);
  JSValue arr = JS_NewArray(jc);
  for (uint32_t i = 0; i < n; i++) {
    char *e = items + i * 16;
    JSValue pair = JS_NewArray(jc);
    JS_SetPropertyUint32(jc, pair, 0, take_string(PTR(e, 0), U32(e, 4)));
    JS_SetPropertyUint32(jc, pair, 1, take_string(PTR(e, 8), U32(e, 12)));
    JS_SetPropertyUint32(jc, arr, i, pair);
  }
  release(items, n);
  return arr;
}

/* ------------------------------------------------------------------------------ */
/* globalThis.__ambit: the context                                                  */

static JSValue js_ctx_direction(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  return JS_NewInt32(c, ctx_direction(arg_i32(c, argv[0])));
}

/* [identity, workload, namespace, address, port]; magic 0: source, 1: destination. */
static JSValue js_ctx_peer(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  if (magic == 0) ctx_source(h, ret_area);
  else ctx_destination(h, ret_area);
  /* peer: three option<string> of 12 bytes, address at 36, port at 44 */
  uint8_t peer[48];
  memcpy(peer, ret_area, sizeof peer);
  JSValue arr = JS_NewArray(c);
  JS_SetPropertyUint32(c, arr, 0, take_option_string(peer + 0));
  JS_SetPropertyUint32(c, arr, 1, take_option_string(peer + 12));
  JS_SetPropertyUint32(c, arr, 2, take_option_string(peer + 24));
  JS_SetPropertyUint32(c, arr, 3, take_string(PTR(peer, 36), U32(peer, 40)));
  JS_SetPropertyUint32(c, arr, 4, JS_NewInt32(c, U16(peer, 44)));
  return arr;
}

/* The peer's key (a u32, as a number); magic 0: source, 1: destination. */
static JSValue js_ctx_peer_key(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  uint32_t k = (uint32_t)(magic == 0 ? ctx_source_key(h) : ctx_destination_key(h));
  return JS_NewUint32(c, k);
}

/* magic 0: service, 1: route, 2: request-id (always a string) */
static JSValue js_ctx_text(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  switch (magic) {
    case 0: ctx_service(h, ret_area); return take_option_string(ret_area);
    case 1: ctx_route(h, ret_area); return take_option_string(ret_area);
    default: ctx_request_id(h, ret_area); return take_string(PTR(ret_area, 0), U32(ret_area, 4));
  }
}

static JSValue js_ctx_attempt(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  return JS_NewInt32(c, ctx_attempt(arg_i32(c, argv[0])));
}

/* [version, cipher, sni] or undefined */
static JSValue js_ctx_tls(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  ctx_tls(arg_i32(c, argv[0]), ret_area);
  if (!U8(ret_area, 0)) return JS_UNDEFINED;
  uint8_t tls[28];
  memcpy(tls, ret_area + 4, sizeof tls);
  JSValue arr = JS_NewArray(c);
  JS_SetPropertyUint32(c, arr, 0, take_string(PTR(tls, 0), U32(tls, 4)));
  JS_SetPropertyUint32(c, arr, 1, take_string(PTR(tls, 8), U32(tls, 12)));
  JS_SetPropertyUint32(c, arr, 2, take_option_string(tls + 16));
  return arr;
}

/* ------------------------------------------------------------------------------ */
/* globalThis.__ambit: the heads. Header functions take magic 0 (request) or 1 (response). */

/* magic 0: method, 1: scheme, 2: authority, 3: path */
static JSValue js_req_field(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  switch (magic) {
    case 0: req_method(h, ret_area); break;
    case 1: req_scheme(h, ret_area); break;
    case 2: req_authority(h, ret_area); break;
    default: req_path(h, ret_area); break;
  }
  return take_string(PTR(ret_area, 0), U32(ret_area, 4));
}

/* magic 0: method, 2: authority, 3: path */
static JSValue js_req_set_field(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  text v;
  if (!arg_text(c, argv[1], &v)) return JS_EXCEPTION;
  switch (magic) {
    case 0: req_set_method(h, v.ptr, v.len); break;
    case 2: req_set_authority(h, v.ptr, v.len); break;
    default: req_set_path(h, v.ptr, v.len); break;
  }
  free_text(c, &v);
  return JS_UNDEFINED;
}

static JSValue js_res_status(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  return JS_NewInt32(c, res_status(arg_i32(c, argv[0])));
}

static JSValue js_res_set_status(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  res_set_status(arg_i32(c, argv[0]), arg_i32(c, argv[1]) & 0xffff);
  return JS_UNDEFINED;
}

static JSValue js_h_get(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  text n;
  if (!arg_text(c, argv[1], &n)) return JS_EXCEPTION;
  if (magic == 0) req_get(h, n.ptr, n.len, ret_area);
  else res_get(h, n.ptr, n.len, ret_area);
  free_text(c, &n);
  return take_option_string(ret_area);
}

static JSValue js_h_get_all(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  text n;
  if (!arg_text(c, argv[1], &n)) return JS_EXCEPTION;
  if (magic == 0) req_get_all(h, n.ptr, n.len, ret_area);
  else res_get_all(h, n.ptr, n.len, ret_area);
  free_text(c, &n);
  return take_string_list(ret_area);
}

static JSValue js_h_has(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  text n;
  if (!arg_text(c, argv[1], &n)) return JS_EXCEPTION;
  int32_t r = magic == 0 ? req_has(h, n.ptr, n.len) : res_has(h, n.ptr, n.len);
  free_text(c, &n);
  return JS_NewBool(c, r != 0);
}

/* magic: bit 0 selects the head (0 request, 1 response); bits 1-2 the change (0 set, 1 append) */
static JSValue js_h_put(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  text n, v;
  if (!arg_text(c, argv[1], &n)) return JS_EXCEPTION;
  if (!arg_text(c, argv[2], &v)) {
    free_text(c, &n);
    return JS_EXCEPTION;
  }
  switch (magic) {
    case 0: req_set(h, n.ptr, n.len, v.ptr, v.len); break;
    case 1: res_set(h, n.ptr, n.len, v.ptr, v.len); break;
    case 2: req_append(h, n.ptr, n.len, v.ptr, v.len); break;
    default: res_append(h, n.ptr, n.len, v.ptr, v.len); break;
  }
  free_text(c, &n);
  free_text(c, &v);
  return JS_UNDEFINED;
}

static JSValue js_h_remove(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  text n;
  if (!arg_text(c, argv[1], &n)) return JS_EXCEPTION;
  if (magic == 0) req_remove(h, n.ptr, n.len);
  else res_remove(h, n.ptr, n.len);
  free_text(c, &n);
  return JS_UNDEFINED;
}

static JSValue js_h_size(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  return JS_NewInt32(c, magic == 0 ? req_size(h) : res_size(h));
}

static JSValue js_h_entries(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  int32_t h = arg_i32(c, argv[0]);
  if (magic == 0) req_entries(h, ret_area);
  else res_entries(h, ret_area);
  return take_entries(ret_area);
}

/* ------------------------------------------------------------------------------ */
/* globalThis.__ambit: the host interface                                            */

static JSValue js_log(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  text m;
  if (!arg_text(c, argv[1], &m)) return JS_EXCEPTION;
  host_log(arg_i32(c, argv[0]), m.ptr, m.len);
  free_text(c, &m);
  return JS_UNDEFINED;
}

static JSValue js_counter_add(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  text n;
  if (!arg_text(c, argv[0], &n)) return JS_EXCEPTION;
  host_counter_add(n.ptr, n.len, arg_i32(c, argv[1]));
  free_text(c, &n);
  return JS_UNDEFINED;
}

/* magic 0: now, 1: monotonic, 2: random */
static JSValue js_number(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  switch (magic) {
    case 0: return JS_NewFloat64(c, host_now());
    case 1: return JS_NewFloat64(c, host_monotonic());
    default: return JS_NewFloat64(c, host_random());
  }
}

/* [value, version] or undefined */
static JSValue js_shared_get(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  text k;
  if (!arg_text(c, argv[0], &k)) return JS_EXCEPTION;
  host_shared_get(k.ptr, k.len, ret_area);
  free_text(c, &k);
  if (!U8(ret_area, 0)) return JS_UNDEFINED;
  uint32_t version = U32(ret_area, 12);
  JSValue arr = JS_NewArray(c);
  JS_SetPropertyUint32(c, arr, 0, take_string(PTR(ret_area, 4), U32(ret_area, 8)));
  JS_SetPropertyUint32(c, arr, 1, JS_NewUint32(c, version));
  return arr;
}

static JSValue js_shared_set(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  text k, v;
  if (!arg_text(c, argv[0], &k)) return JS_EXCEPTION;
  if (!arg_text(c, argv[1], &v)) {
    free_text(c, &k);
    return JS_EXCEPTION;
  }
  uint32_t version = 0;
  JS_ToUint32(c, &version, argv[2]);
  int32_t ok = host_shared_set(k.ptr, k.len, v.ptr, v.len, (int32_t)version);
  free_text(c, &k);
  free_text(c, &v);
  return JS_NewBool(c, ok != 0);
}

static JSValue js_shared_add(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  text k;
  if (!arg_text(c, argv[0], &k)) return JS_EXCEPTION;
  double delta = 0;
  JS_ToFloat64(c, &delta, argv[1]);
  double r = host_shared_add(k.ptr, k.len, delta);
  free_text(c, &k);
  return JS_NewFloat64(c, r);
}

/* magic 0: delay-request, 1: set-per-try-timeout */
static JSValue js_directive_ms(JSContext *c, JSValueConst this, int argc, JSValueConst *argv, int magic) {
  uint32_t ms = 0;
  JS_ToUint32(c, &ms, argv[0]);
  if (magic == 0) host_delay_request((int32_t)ms);
  else host_set_per_try_timeout((int32_t)ms);
  return JS_UNDEFINED;
}

static JSValue js_route_to_subset(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  text s;
  if (!arg_text(c, argv[0], &s)) return JS_EXCEPTION;
  host_route_to_subset(s.ptr, s.len);
  free_text(c, &s);
  return JS_UNDEFINED;
}

static JSValue js_upstream_error(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  host_upstream_error(ret_area);
  return take_option_string(ret_area);
}

/* [active-requests, active-retries] */
static JSValue js_upstream_load(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  host_upstream_load(ret_area);
  JSValue arr = JS_NewArray(c);
  JS_SetPropertyUint32(c, arr, 0, JS_NewUint32(c, U32(ret_area, 0)));
  JS_SetPropertyUint32(c, arr, 1, JS_NewUint32(c, U32(ret_area, 4)));
  return arr;
}

static JSValue js_report_error(JSContext *c, JSValueConst this, int argc, JSValueConst *argv) {
  text m;
  if (!arg_text(c, argv[0], &m)) return JS_EXCEPTION;
  host_report_error(m.ptr, m.len);
  free_text(c, &m);
  return JS_UNDEFINED;
}

static const JSCFunctionListEntry ambit_functions[] = {
    JS_CFUNC_DEF("ctxDirection", 1, js_ctx_direction),
    JS_CFUNC_MAGIC_DEF("ctxSource", 1, js_ctx_peer, 0),
    JS_CFUNC_MAGIC_DEF("ctxDestination", 1, js_ctx_peer, 1),
    JS_CFUNC_MAGIC_DEF("ctxSourceKey", 1, js_ctx_peer_key, 0),
    JS_CFUNC_MAGIC_DEF("ctxDestinationKey", 1, js_ctx_peer_key, 1),
    JS_CFUNC_MAGIC_DEF("ctxService", 1, js_ctx_text, 0),
    JS_CFUNC_MAGIC_DEF("ctxRoute", 1, js_ctx_text, 1),
    JS_CFUNC_MAGIC_DEF("ctxRequestId", 1, js_ctx_text, 2),
    JS_CFUNC_DEF("ctxAttempt", 1, js_ctx_attempt),
    JS_CFUNC_DEF("ctxTls", 1, js_ctx_tls),

    JS_CFUNC_MAGIC_DEF("reqMethod", 1, js_req_field, 0),
    JS_CFUNC_MAGIC_DEF("reqScheme", 1, js_req_field, 1),
    JS_CFUNC_MAGIC_DEF("reqAuthority", 1, js_req_field, 2),
    JS_CFUNC_MAGIC_DEF("reqPath", 1, js_req_field, 3),
    JS_CFUNC_MAGIC_DEF("reqSetMethod", 2, js_req_set_field, 0),
    JS_CFUNC_MAGIC_DEF("reqSetAuthority", 2, js_req_set_field, 2),
    JS_CFUNC_MAGIC_DEF("reqSetPath", 2, js_req_set_field, 3),
    JS_CFUNC_DEF("resStatus", 1, js_res_status),
    JS_CFUNC_DEF("resSetStatus", 2, js_res_set_status),

    JS_CFUNC_MAGIC_DEF("reqGet", 2, js_h_get, 0),
    JS_CFUNC_MAGIC_DEF("resGet", 2, js_h_get, 1),
    JS_CFUNC_MAGIC_DEF("reqGetAll", 2, js_h_get_all, 0),
    JS_CFUNC_MAGIC_DEF("resGetAll", 2, js_h_get_all, 1),
    JS_CFUNC_MAGIC_DEF("reqHas", 2, js_h_has, 0),
    JS_CFUNC_MAGIC_DEF("resHas", 2, js_h_has, 1),
    JS_CFUNC_MAGIC_DEF("reqSet", 3, js_h_put, 0),
    JS_CFUNC_MAGIC_DEF("resSet", 3, js_h_put, 1),
    JS_CFUNC_MAGIC_DEF("reqAppend", 3, js_h_put, 2),
    JS_CFUNC_MAGIC_DEF("resAppend", 3, js_h_put, 3),
    JS_CFUNC_MAGIC_DEF("reqRemove", 2, js_h_remove, 0),
    JS_CFUNC_MAGIC_DEF("resRemove", 2, js_h_remove, 1),
    JS_CFUNC_MAGIC_DEF("reqSize", 1, js_h_size, 0),
    JS_CFUNC_MAGIC_DEF("resSize", 1, js_h_size, 1),
    JS_CFUNC_MAGIC_DEF("reqEntries", 1, js_h_entries, 0),
    JS_CFUNC_MAGIC_DEF("resEntries", 1, js_h_entries, 1),

    JS_CFUNC_DEF("log", 2, js_log),
    JS_CFUNC_DEF("counterAdd", 2, js_counter_add),
    JS_CFUNC_MAGIC_DEF("now", 0, js_number, 0),
    JS_CFUNC_MAGIC_DEF("monotonic", 0, js_number, 1),
    JS_CFUNC_MAGIC_DEF("random", 0, js_number, 2),
    JS_CFUNC_DEF("sharedGet", 1, js_shared_get),
    JS_CFUNC_DEF("sharedSet", 3, js_shared_set),
    JS_CFUNC_DEF("sharedAdd", 2, js_shared_add),
    JS_CFUNC_MAGIC_DEF("delayRequest", 1, js_directive_ms, 0),
    JS_CFUNC_MAGIC_DEF("setPerTryTimeout", 1, js_directive_ms, 1),
    JS_CFUNC_DEF("routeToSubset", 1, js_route_to_subset),
    JS_CFUNC_DEF("upstreamError", 0, js_upstream_error),
    JS_CFUNC_DEF("upstreamLoad", 0, js_upstream_load),
    JS_CFUNC_DEF("reportError", 1, js_report_error),
};

/* ------------------------------------------------------------------------------ */
/* Failures                                                                         */

/* `String(e)`, then its stack: "TypeError: x is undefined\n    at onRequest (filter.js:12:5)". */
static void describe_exception(JSValue e, char *out, size_t cap) {
  size_t used = 0;
  const char *s = JS_ToCString(jc, e);
  if (s) {
    used = strlen(s) < cap - 1 ? strlen(s) : cap - 1;
    memcpy(out, s, used);
    JS_FreeCString(jc, s);
  }
  if (JS_IsObject(e)) {
    JSValue stack = JS_GetProperty(jc, e, at_stack);
    if (JS_IsString(stack)) {
      const char *st = JS_ToCString(jc, stack);
      if (st && used + 1 < cap - 1) {
        out[used++] = '\n';
        size_t n = strlen(st);
        if (n > cap - 1 - used) n = cap - 1 - used;
        memcpy(out + used, st, n);
        used += n;
      }
      if (st) JS_FreeCString(jc, st);
    }
    JS_FreeValue(jc, stack);
  }
  out[used] = 0;
}

static char failure[4096];

/* The handler threw: say why, then trap. */
_Noreturn static void fail_call(void) {
  JSValue e = JS_GetException(jc);
  describe_exception(e, failure, sizeof failure);
  JS_FreeValue(jc, e);
  host_report_error(failure, strlen(failure));
  __builtin_trap();
}

/* ------------------------------------------------------------------------------ */
/* Results handed to the host, freed by the post-return functions                   */

static _Alignas(8) uint8_t result_area[32];
/* C strings lent to the host for one result (returned by JS_ToCStringLen). */
static const char *lent[2 * 256 + 4];
static size_t lent_count;
static void *lent_list;

static void lend_text(JSValueConst v, uint8_t *at) {
  size_t len = 0;
  const char *p = JS_ToCStringLen(jc, &len, v);
  if (!p) fail_call();
  if (lent_count < sizeof lent / sizeof lent[0]) {
    lent[lent_count++] = p;
  } else {
    JS_ThrowRangeError(jc, "a local response may have at most 256 headers");
    JS_FreeCString(jc, p);
    fail_call();
  }
  U32(at, 0) = (uint32_t)(uintptr_t)p;
  U32(at, 4) = (uint32_t)len;
}

static void lend_property_text(JSValueConst obj, JSAtom name, uint8_t *at) {
  JSValue v = JS_GetProperty(jc, obj, name);
  if (JS_IsException(v)) fail_call();
  lend_text(v, at);
  JS_FreeValue(jc, v);
}

static uint32_t property_u32(JSValueConst obj, JSAtom name) {
  JSValue v = JS_GetProperty(jc, obj, name);
  if (JS_IsException(v)) fail_call();
  uint32_t n = 0;
  if (JS_ToUint32(jc, &n, v) < 0) fail_call();
  JS_FreeValue(jc, v);
  return n;
}

/* local-response { status: u16, headers: list<tuple<string,string>>, body: string } at `at`. */
static void lend_local_response(JSValueConst r, uint8_t *at) {
  U16(at, 0) = (uint16_t)property_u32(r, at_status);
  JSValue headers = JS_GetProperty(jc, r, at_headers);
  if (JS_IsException(headers)) fail_call();
  int64_t n = 0;
  if (JS_IsObject(headers) && JS_GetLength(jc, headers, &n) < 0) fail_call();
  if (n > 256) {
    JS_ThrowRangeError(jc, "a local response may have at most 256 headers");
    fail_call();
  }
  uint8_t *items = n ? malloc((size_t)n * 16) : NULL;
  for (int64_t i = 0; i < n; i++) {
    JSValue pair = JS_GetPropertyUint32(jc, headers, (uint32_t)i);
    JSValue k = JS_GetPropertyUint32(jc, pair, 0);
    JSValue v = JS_GetPropertyUint32(jc, pair, 1);
    lend_text(k, items + i * 16);
    lend_text(v, items + i * 16 + 8);
    JS_FreeValue(jc, k);
    JS_FreeValue(jc, v);
    JS_FreeValue(jc, pair);
  }
  JS_FreeValue(jc, headers);
  lent_list = items;
  U32(at, 4) = (uint32_t)(uintptr_t)items;
  U32(at, 8) = (uint32_t)n;
  lend_property_text(r, at_body, at + 12);
}

static void post_return(void) {
  for (size_t i = 0; i < lent_count; i++) JS_FreeCString(jc, lent[i]);
  lent_count = 0;
  free(lent_list);
  lent_list = NULL;
}

/* The verdict's `kind`: 'r' + 'e' + 's' respond, 'r' + 'e' + 't' retry. */
static int verdict_kind(JSValueConst v) {
  JSValue k = JS_GetProperty(jc, v, at_kind);
  size_t len = 0;
  const char *s = JS_ToCStringLen(jc, &len, k);
  int kind = 0;
  if (s && len == 7 && memcmp(s, "respond", 7) == 0) kind = 1;
  else if (s && len == 5 && memcmp(s, "retry", 5) == 0) kind = 2;
  if (s) JS_FreeCString(jc, s);
  JS_FreeValue(jc, k);
  return kind;
}

/* ------------------------------------------------------------------------------ */
/* Exports: the handler interface                                                   */

EXPORT(HANDLER "#configure")
void *ex_configure(char *config, size_t len) {
  JSValue arg = take_string(config, len);
  JSValue r = JS_Call(jc, fn_configure, handler_obj, 1, &arg);
  JS_FreeValue(jc, arg);
  if (JS_IsException(r)) fail_call();
  JSValue invalid = JS_GetProperty(jc, r, at_invalid);
  if (!JS_IsUndefined(invalid)) {
    U8(result_area, 0) = 1;
    lend_text(invalid, result_area + 4);
  } else {
    U8(result_area, 0) = 0;
    lend_property_text(r, at_name, result_area + 4);
    U8(result_area, 12) = (uint8_t)property_u32(r, at_phases);
  }
  JS_FreeValue(jc, invalid);
  JS_FreeValue(jc, r);
  return result_area;
}

EXPORT("cabi_post_" HANDLER "#configure")
void post_configure(void *ret) {
  (void)ret;
  post_return();
}

EXPORT(HANDLER "#on-connection")
void *ex_on_connection(int32_t ctx) {
  JSValue arg = JS_NewInt32(jc, ctx);
  JSValue r = JS_Call(jc, fn_connection, handler_obj, 1, &arg);
  if (JS_IsException(r)) fail_call();
  ctx_drop(ctx);
  if (JS_IsUndefined(r) || JS_IsNull(r)) {
    U8(result_area, 0) = 0;
  } else {
    U8(result_area, 0) = 1;
    lend_text(r, result_area + 4);
  }
  JS_FreeValue(jc, r);
  return result_area;
}

EXPORT("cabi_post_" HANDLER "#on-connection")
void post_on_connection(void *ret) {
  (void)ret;
  post_return();
}

EXPORT(HANDLER "#on-request-headers")
void *ex_on_request_headers(int32_t ctx, int32_t req) {
  JSValue args[2] = {JS_NewInt32(jc, ctx), JS_NewInt32(jc, req)};
  JSValue r = JS_Call(jc, fn_request, handler_obj, 2, args);
  if (JS_IsException(r)) fail_call();
  ctx_drop(ctx);
  req_drop(req);
  if (JS_IsUndefined(r) || JS_IsNull(r)) {
    U8(result_area, 0) = 0;
  } else {
    U8(result_area, 0) = 1;
    lend_local_response(r, result_area + 4);
  }
  JS_FreeValue(jc, r);
  return result_area;
}

EXPORT("cabi_post_" HANDLER "#on-request-headers")
void post_on_request_headers(void *ret) {
  (void)ret;
  post_return();
}

EXPORT(HANDLER "#on-response-headers")
void *ex_on_response_headers(int32_t ctx, int32_t req, int32_t res) {
  JSValue args[3] = {JS_NewInt32(jc, ctx), JS_NewInt32(jc, req), JS_NewInt32(jc, res)};
  JSValue r = JS_Call(jc, fn_response, handler_obj, 3, args);
  if (JS_IsException(r)) fail_call();
  ctx_drop(ctx);
  req_drop(req);
  res_drop(res);
  if (JS_IsUndefined(r) || JS_IsNull(r)) {
    U8(result_area, 0) = 0;
  } else if (verdict_kind(r) == 2) {
    U8(result_area, 0) = 2;
    U32(result_area, 4) = property_u32(r, at_delay);
    lend_property_text(r, at_reason, result_area + 8);
  } else {
    U8(result_area, 0) = 1;
    lend_local_response(r, result_area + 4);
  }
  JS_FreeValue(jc, r);
  return result_area;
}

EXPORT("cabi_post_" HANDLER "#on-response-headers")
void post_on_response_headers(void *ret) {
  (void)ret;
  post_return();
}

/* ------------------------------------------------------------------------------ */
/* Pre-initialization                                                               */

extern void __wasm_call_ctors(void);

static char init_error[4096];
static uint32_t init_result[2];

static uint32_t *init_failed(const char *what) {
  size_t n = strlen(what);
  if (n > sizeof init_error - 1) n = sizeof init_error - 1;
  memcpy(init_error, what, n);
  init_error[n] = 0;
  init_result[0] = (uint32_t)(uintptr_t)init_error;
  init_result[1] = (uint32_t)n;
  return init_result;
}

static uint32_t *init_threw(void) {
  JSValue e = JS_GetException(jc);
  describe_exception(e, init_error, sizeof init_error);
  JS_FreeValue(jc, e);
  return init_failed(init_error);
}

static bool handler_function(const char *name, JSValue *out) {
  *out = JS_GetPropertyStr(jc, handler_obj, name);
  return JS_IsFunction(jc, *out);
}

/*
 * Evaluates the filter's bundle (`source`, named `file` in stacks) and keeps its
 * handler. Run once, at build time, before the snapshot; the host never calls it.
 * Returns 0, or a pointer to (message pointer, length) saying what went wrong.
 */
EXPORT("ambit-init")
uint32_t *ambit_init(const char *source, size_t len, const char *file) {
  __wasm_call_ctors();
  rt = JS_NewRuntime();
  if (!rt) return init_failed("QuickJS could not create a runtime");
  JS_SetMaxStackSize(rt, JS_STACK_BYTES);
  jc = JS_NewContext(rt);
  if (!jc) return init_failed("QuickJS could not create a context");

  JSValue global = JS_GetGlobalObject(jc);
  JSValue natives = JS_NewObject(jc);
  JS_SetPropertyFunctionList(jc, natives, ambit_functions, sizeof ambit_functions / sizeof ambit_functions[0]);
  JS_DefinePropertyValueStr(jc, global, "__ambit", natives, JS_PROP_CONFIGURABLE);

  at_kind = JS_NewAtom(jc, "kind");
  at_status = JS_NewAtom(jc, "status");
  at_headers = JS_NewAtom(jc, "headers");
  at_body = JS_NewAtom(jc, "body");
  at_delay = JS_NewAtom(jc, "delayMs");
  at_reason = JS_NewAtom(jc, "reason");
  at_name = JS_NewAtom(jc, "name");
  at_phases = JS_NewAtom(jc, "phases");
  at_invalid = JS_NewAtom(jc, "invalid");
  at_stack = JS_NewAtom(jc, "stack");
  at_length = JS_NewAtom(jc, "length");

  JSValue r = JS_Eval(jc, source, len, file, JS_EVAL_TYPE_GLOBAL | JS_EVAL_FLAG_STRICT);
  if (JS_IsException(r)) {
    JS_FreeValue(jc, global);
    return init_threw();
  }
  JS_FreeValue(jc, r);

  handler_obj = JS_GetPropertyStr(jc, global, "__ambitHandler");
  JS_FreeValue(jc, global);
  if (!JS_IsObject(handler_obj)) return init_failed("the bundle did not define globalThis.__ambitHandler");
  if (!handler_function("configure", &fn_configure) || !handler_function("onConnection", &fn_connection) ||
      !handler_function("onRequest", &fn_request) || !handler_function("onResponse", &fn_response)) {
    return init_failed("globalThis.__ambitHandler lacks configure, onConnection, onRequest or onResponse");
  }
  /* Start every instance with a collected heap. */
  JS_RunGC(rt);
  return 0;
}
