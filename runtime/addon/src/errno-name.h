#ifndef AMBIT_ERRNO_NAME_H
#define AMBIT_ERRNO_NAME_H

/* The symbolic name of an errno value ("EPERM"); "EUNKNOWN" when it has none. */
const char *errno_name(int err);

#endif
