/* log: one line per event on stderr, plain or JSON (--log-json). Never given secrets. */
#ifndef CADRE_LOG_H
#define CADRE_LOG_H

#include <stdbool.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Called once from main before any other thread starts. */
void log_setup(const char *program, bool json, log_level_t min_level);
/* Writes one line (a trailing newline in fmt is not needed). Thread-safe. */
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A rate limit for one kind of line (zero it to start). */
typedef struct {
  long long window_start; /* monotonic ms */
  int in_window;
  long suppressed;
} log_limit_t;
#define LOG_LIMIT_BURST 5
#define LOG_LIMIT_WINDOW_MS 10000
/* Like log_msg, but at most LOG_LIMIT_BURST lines per LOG_LIMIT_WINDOW_MS go
 * out through lim; the rest are counted, and the next line that goes out
 * says how many were not logged. Not thread-safe per lim. */
void log_limited(log_limit_t *lim, log_level_t level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
