/* util: small helpers shared by the three programs (time, files, paths). */
#ifndef CADRE_UTIL_H
#define CADRE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Monotonic milliseconds. */
int64_t util_now_ms(void);
/* Wall-clock milliseconds since the epoch. */
int64_t util_wall_ms(void);
/* read(2), retried when a signal interrupts it. */
ssize_t util_read(int fd, void *buf, size_t n);
/* Reads until n bytes or the end of the file: the count read, or -errno. */
ssize_t util_read_full(int fd, void *buf, size_t n);
/* mkdir -p with mode for created directories. Returns 0 or -errno. */
int util_mkdir_p(const char *path, mode_t mode);
/* Writes data to path atomically (temp file, fsync, rename) with mode. Returns 0 or -errno. */
int util_write_file(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole file (NUL-terminated, at most max bytes). Caller frees. NULL with errno on failure
 * (EFBIG when larger than max). */
char *util_read_file(const char *path, size_t max, size_t *len);
/* Frees a NULL-terminated array of strings and its strings (wipe: zeroed
 * first, for secrets). Accepts NULL. */
void util_strv_free(char **list, bool wipe);
/* "a/b" from a and b. Caller frees. */
char *util_path_join(const char *a, const char *b);
/* The default state directory ($XDG_STATE_HOME/cadre or ~/.local/state/cadre) into buf. */
int util_state_dir(char *buf, size_t len);
/* Directory of the running executable into buf. */
int util_exe_dir(char *buf, size_t len);
/* Random hex id of n bytes (2n chars + NUL in buf). */
void util_random_hex(char *buf, size_t nbytes);
/* Length of the valid UTF-8 sequence at s (1 to 4 bytes, at most n), or 0
 * when the bytes there are not valid UTF-8 (overlong forms and surrogates
 * included). */
size_t util_utf8_seq(const unsigned char *s, size_t n);
/* True when the len bytes at s are valid UTF-8 (NUL bytes count as valid). */
bool util_utf8_valid(const char *s, size_t len);
/* Daemon signal set-up: SIGINT and SIGTERM set the flag whose address this
 * returns (the program's one signal-handler state), SIGPIPE is ignored, so a
 * peer that went away is an error return, not a death. */
/* Installs a SIGHUP handler; the flag it returns becomes 1 at each SIGHUP (the caller clears it). */
volatile int *util_hup_signal(void);
volatile int *util_stop_signals(void);
/* The long options every Cadre program takes, to end a getopt_long table with:
 * --log-json ('J'), --verbose ('v'), --version ('V'), --help ('h'). */
#define UTIL_COMMON_LONGOPTS                                                                             \
  {"log-json", no_argument, 0, 'J'}, {"verbose", no_argument, 0, 'v'}, {"version", no_argument, 0, 'V'}, \
      {"help", no_argument, 0, 'h'}, {                                                                   \
    0, 0, 0, 0                                                                                           \
  }

/* Handles an option of UTIL_COMMON_LONGOPTS (or an unknown one, '?') for
 * program prog: sets *log_json / *verbose (either may be NULL when the program
 * has no such option), prints the version or usage. Returns -1 when parsing
 * goes on, else the exit status main returns (0 after --version and --help,
 * 2 for an unknown option). */
int util_common_option(int c, const char *prog, void (*usage)(FILE *), bool *log_json, bool *verbose);

/* This host's name into buf. */
void util_hostname(char *buf, size_t len);

#endif
