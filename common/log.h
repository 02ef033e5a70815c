/* log: one line per event on stderr, plain or JSON (--log-json). Never given secrets. */
#ifndef CADRE_LOG_H
#define CADRE_LOG_H

#include <stdbool.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Called once from main before any other thread starts. */
void log_setup(const char *program, bool json, log_level_t min_level);
/* Writes one line (a trailing newline in fmt is not needed). Thread-safe. */
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
