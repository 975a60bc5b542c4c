#ifndef AMBIT_SYSTEM_ERROR_H
#define AMBIT_SYSTEM_ERROR_H

#include <node_api.h>

/* The symbolic name of an errno value ("EPERM"); "EUNKNOWN" when it has none. */
const char *errno_name(int err);

/* Throws Error(message) with .code = errno name, .errno = err and .syscall, like Node's system errors. Returns NULL. */
napi_value throw_system_error(napi_env env, int err, const char *syscall, const char *message);

#endif
