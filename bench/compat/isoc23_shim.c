/* The three glibc 2.38 entry points that uWebSockets.js's Node 20 build calls, for glibc 2.36.
 *
 * glibc 2.38 redirects strtol/strtoul/sscanf to __isoc23_* variants that also accept the C23
 * "0b" binary prefix. uWS parses decimal and hex numbers only, so the C17 functions behave the
 * same for it. Built without symbol versions, so the loader accepts these definitions for the
 * weakened GLIBC_2.38 references (see weaken_glibc_versions.py). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

long __isoc23_strtol(const char *text, char **end, int base) { return strtol(text, end, base); }

unsigned long __isoc23_strtoul(const char *text, char **end, int base) { return strtoul(text, end, base); }

int __isoc23_sscanf(const char *text, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int matched = vsscanf(text, format, args);
    va_end(args);
    return matched;
}
