/*
 * What the addon's source files share: the argument and error helpers
 * (helpers.c), and the functions each file gives the module table
 * (pmpool.c's init).
 *
 * Every function that takes JavaScript values returns 0 / NULL having thrown
 * on failure, with a pending exception left as it is (a getter of an
 * argument that threw is the error to report).
 */
#ifndef PMPOOL_ADDON_H
#define PMPOOL_ADDON_H

#define _GNU_SOURCE
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#define PATH_BYTES 4096
/* Node 20 refuses external ArrayBuffers above 4 GiB (kMaxByteLength). */
#define MAX_WINDOW_BYTES ((uint64_t)4 << 30)

/* ---------- helpers.c ---------- */

/* Throws an Error with .code (the errno's name), .errno (negative), .syscall and, given one, .path. */
void throw_errno(napi_env env, int err, const char *syscall, const char *path);
void throw_type(napi_env env, const char *message);
int exception_pending(napi_env env);

int arg_int64(napi_env env, napi_value v, int64_t *out, const char *what);
int arg_int32(napi_env env, napi_value v, int32_t *out, const char *what);
int arg_string(napi_env env, napi_value v, char *buf, size_t cap, const char *what);
/* A boolean, and nothing else: `1` or undefined for `true` would be a read-write mapping asked for read-only. */
int arg_bool(napi_env env, napi_value v, int *out, const char *what);

napi_value make_int64(napi_env env, int64_t x);
napi_value undefined(napi_env env);
void set_number(napi_env env, napi_value obj, const char *name, int64_t x);

#define GET_ARGS(n)                                                 \
  size_t argc = (n);                                                \
  napi_value argv[(n) > 0 ? (n) : 1];                               \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);             \
  if (argc < (n)) {                                                 \
    throw_type(env, "missing arguments");                           \
    return NULL;                                                    \
  }

/* ---------- pmpool.c ---------- */

napi_value js_load_file(napi_env env, napi_callback_info info);

/* ---------- mappings.c ---------- */

/* An ArrayBuffer over a fresh mapping, which it owns (munmap(), or the finalizer). */
napi_value wrap_mapping(napi_env env, void *addr, size_t length, const char *syscall);

napi_value js_mmap(napi_env env, napi_callback_info info);
napi_value js_munmap(napi_env env, napi_callback_info info);
napi_value js_msync(napi_env env, napi_callback_info info);
napi_value js_madvise(napi_env env, napi_callback_info info);
napi_value js_mappings(napi_env env, napi_callback_info info);
napi_value js_prefer_huge_pages(napi_env env, napi_callback_info info);
napi_value js_huge_page_work(napi_env env, napi_callback_info info);

#endif
