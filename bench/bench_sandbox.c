/* cadre-bench-sandbox: what the command sandbox costs per command.
 *
 * Runs `true` N times (default 100) through execute_bash (tools_run, as the
 * agent daemon does) with the sandbox (bubblewrap, as cadre-agentd runs by
 * default) and without it (--no-sandbox), alternating, in a fresh temporary
 * workspace, and prints the median, the 10th and 90th percentile and the mean
 * wall time of one command in each mode, and the difference of the medians.
 *
 *   ninja -C build bench/cadre-bench-sandbox && build/bench/cadre-bench-sandbox [N] [--json]
 * CADRE_BENCH_PROCS=-1: no process limit (so no pids cgroup, whose joining costs root ~10 ms).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sandbox.h"
#include "tools.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The q-th quantile of sorted v (n values). */
static double quantile(const double *v, int n, double q) {
  double pos = q * (n - 1);
  int i = (int)pos;
  return i + 1 < n ? v[i] + (pos - i) * (v[i + 1] - v[i]) : v[i];
}

/* One `true` through execute_bash: its wall time in ms, or -1 when it failed. */
static double one(tools_t *t) {
  tool_result_t r;
  double t0 = now_ms();
  tools_run(t, "execute_bash", "{\"command\": \"true\"}", NULL, &r);
  double ms = now_ms() - t0;
  bool ok = !r.is_error && strstr(r.text, "[exit 0]");
  tool_result_free(&r);
  return ok ? ms : -1;
}

typedef struct {
  double median, p10, p90, mean;
} stats_t;

static stats_t summarise(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  stats_t s = {quantile(v, n, 0.5), quantile(v, n, 0.1), quantile(v, n, 0.9), 0};
  for (int i = 0; i < n; i++)
    s.mean += v[i] / n;
  return s;
}

int main(int argc, char **argv) {
  int n = 100;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      json = true;
    else if (atoi(argv[i]) > 0)
      n = atoi(argv[i]);
  }
  char ws[] = "/tmp/cadre-bench-sandbox-XXXXXX", err[512];
  if (!mkdtemp(ws)) {
    perror("mkdtemp");
    return 1;
  }
  sandbox_opts_t so = {.workspace = ws, .procs = getenv("CADRE_BENCH_PROCS") ? atol(getenv("CADRE_BENCH_PROCS")) : 0};
  sandbox_t *sb = sandbox_new(&so, err, sizeof err);
  if (!sb) {
    fprintf(stderr, "cadre-bench-sandbox: the sandbox cannot be made: %s\n", err);
    rmdir(ws);
    return 1;
  }
  tools_opts_t plain_o = {.workspace = ws}, boxed_o = {.workspace = ws, .sandbox = sb};
  tools_t *plain = tools_new(&plain_o, err, sizeof err), *boxed = tools_new(&boxed_o, err, sizeof err);
  double *with = calloc((size_t)n, sizeof *with), *without = calloc((size_t)n, sizeof *without);
  int rc = 0;
  one(plain), one(boxed); /* warm-up: page cache, dynamic linking */
  for (int i = 0; i < n && rc == 0; i++) {
    with[i] = one(boxed);
    without[i] = one(plain);
    if (with[i] < 0 || without[i] < 0) {
      fprintf(stderr, "cadre-bench-sandbox: a command failed\n");
      rc = 1;
    }
  }
  if (rc == 0) {
    stats_t w = summarise(with, n), o = summarise(without, n);
    if (json)
      printf("{\"commands\": %d, \"sandbox_ms\": {\"median\": %.2f, \"p10\": %.2f, \"p90\": %.2f, \"mean\": %.2f}, "
             "\"no_sandbox_ms\": {\"median\": %.2f, \"p10\": %.2f, \"p90\": %.2f, \"mean\": %.2f}, "
             "\"overhead_ms\": %.2f}\n",
             n, w.median, w.p10, w.p90, w.mean, o.median, o.p10, o.p90, o.mean, w.median - o.median);
    else
      printf("execute_bash \"true\", %d commands each (ms per command)\n"
             "               median    p10    p90   mean\n"
             "sandbox       %7.2f %6.2f %6.2f %6.2f\n"
             "no sandbox    %7.2f %6.2f %6.2f %6.2f\n"
             "overhead      %7.2f (difference of the medians)\n",
             n, w.median, w.p10, w.p90, w.mean, o.median, o.p10, o.p90, o.mean, w.median - o.median);
  }
  free(with);
  free(without);
  tools_destroy(&plain);
  tools_destroy(&boxed);
  sandbox_destroy(&sb);
  rmdir(ws);
  return rc;
}
