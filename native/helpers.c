/*
 * The addon's helpers: JavaScript errors from errnos, and checked reading of
 * arguments (addon.h says the conventions).
 */
#include "addon.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---------- error helpers ---------- */

/* The errno's symbolic name ("ENOENT"). glibc 2.32 and later know every
   one (strerrorname_np); elsewhere, and for a number it does not know, the
   name is made from the number ("E121"), never a name shared by two errnos. */
static const char *errno_name(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name) return name;
#endif
  static __thread char made[24];
  snprintf(made, sizeof made, "E%d", err);
  return made;
}

/* An exception already pending (a getter of an argument threw) is the error
   to report: it is left as it is, and no other N-API call is made over it. */
int exception_pending(napi_env env) {
  bool pending = false;
  return napi_is_exception_pending(env, &pending) == napi_ok && pending;
}

void throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  if (exception_pending(env)) return;
  char message[PATH_BYTES + 256];
  if (path)
    snprintf(message, sizeof message, "%s: %s, %s '%s'", errno_name(err), strerror(err), syscall, path);
  else
    snprintf(message, sizeof message, "%s: %s, %s", errno_name(err), strerror(err), syscall);
  napi_value msg, error, code, num, sys;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_set_named_property(env, error, "code", code);
  napi_create_int32(env, -err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  if (path) {
    napi_value p;
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &p);
    napi_set_named_property(env, error, "path", p);
  }
  napi_throw(env, error);
}

void throw_type(napi_env env, const char *message) {
  if (exception_pending(env)) return;
  napi_throw_type_error(env, "ERR_INVALID_ARG", message);
}

/* ---------- argument helpers: each returns 0 and has thrown on failure ---------- */

int arg_int64(napi_env env, napi_value v, int64_t *out, const char *what) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_number) {
    double d;
    napi_get_value_double(env, v, &d);
    if (d != d || d < 0 || d > 9007199254740991.0 || d != (double)(int64_t)d) {
      char m[128];
      snprintf(m, sizeof m, "%s must be a non-negative safe integer", what);
      throw_type(env, m);
      return 0;
    }
    *out = (int64_t)d;
    return 1;
  }
  if (t == napi_bigint) {
    bool lossless;
    napi_get_value_bigint_int64(env, v, out, &lossless);
    if (!lossless || *out < 0) {
      char m[128];
      snprintf(m, sizeof m, "%s must fit a non-negative int64", what);
      throw_type(env, m);
      return 0;
    }
    return 1;
  }
  char m[128];
  snprintf(m, sizeof m, "%s must be a number or bigint", what);
  throw_type(env, m);
  return 0;
}

int arg_int32(napi_env env, napi_value v, int32_t *out, const char *what) {
  int64_t x;
  if (!arg_int64(env, v, &x, what)) return 0;
  if (x > INT32_MAX) {
    throw_type(env, "integer argument out of range");
    return 0;
  }
  *out = (int32_t)x;
  return 1;
}

int arg_string(napi_env env, napi_value v, char *buf, size_t cap, const char *what) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_string) {
    char m[128];
    snprintf(m, sizeof m, "%s must be a string", what);
    throw_type(env, m);
    return 0;
  }
  size_t len;
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  if (len + 1 > cap) {
    throw_errno(env, ENAMETOOLONG, what, NULL);
    return 0;
  }
  napi_get_value_string_utf8(env, v, buf, cap, &len);
  if (strlen(buf) != len) {
    char m[128];
    snprintf(m, sizeof m, "%s must not contain NUL", what);
    throw_type(env, m);
    return 0;
  }
  return 1;
}

int arg_bool(napi_env env, napi_value v, int *out, const char *what) {
  bool b = false;
  if (napi_get_value_bool(env, v, &b) != napi_ok) {
    char m[128];
    snprintf(m, sizeof m, "%s must be a boolean", what);
    throw_type(env, m);
    return 0;
  }
  *out = b;
  return 1;
}

napi_value make_int64(napi_env env, int64_t x) {
  napi_value v;
  napi_create_int64(env, x, &v);
  return v;
}

napi_value undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}


void set_number(napi_env env, napi_value obj, const char *name, int64_t x) {
  napi_set_named_property(env, obj, name, make_int64(env, x));
}
