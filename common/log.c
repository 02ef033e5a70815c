#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Set once by log_setup() before threads start, read-only afterwards. */
static struct {
  const char *program;
  bool json;
  log_level_t min;
} log_cfg = {"cadre", false, LOG_INFO};

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_setup(const char *program, bool json, log_level_t min_level) {
  log_cfg.program = program;
  log_cfg.json = json;
  log_cfg.min = min_level;
}

static void timestamp(char *buf, size_t len) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void log_msg(log_level_t level, const char *fmt, ...) {
  if (level < log_cfg.min)
    return;
  char text[2048], ts[40];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  timestamp(ts, sizeof ts);
  if (log_cfg.json) {
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level", level_names[level], "prog", log_cfg.program, "msg", text);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (line)
      fprintf(stderr, "%s\n", line);
    free(line);
    json_decref(o);
  } else {
    fprintf(stderr, "%s %s %s: %s\n", ts, log_cfg.program, level_names[level], text);
  }
}

void log_limited(log_limit_t *lim, log_level_t level, const char *fmt, ...) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long long ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  if (ms - lim->window_start >= LOG_LIMIT_WINDOW_MS) {
    lim->window_start = ms;
    lim->in_window = 0;
  }
  if (lim->in_window >= LOG_LIMIT_BURST) {
    lim->suppressed++;
    return;
  }
  lim->in_window++;
  char text[1800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (lim->suppressed > 0)
    log_msg(level, "%s (and %ld more like it not logged)", text, lim->suppressed);
  else
    log_msg(level, "%s", text);
  lim->suppressed = 0;
}
