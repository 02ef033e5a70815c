/* perf.c: the agents' performance figures (see perf.h). */
#include "perf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jx.h"
#include "util.h"

enum {
  R_KIND,
  R_MODEL,
  R_ROLE,
  R_OK,
  R_RETRIES,
  R_LATENCY,
  R_TTFT,
  R_TOKENS,
  R_COST,
  R_CALLS,
  R_ERRORS,
  R_VERDICT,
  R_PROMPT,
  R_TS
};

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double perf_quantile(double *v, size_t n, double p) {
  if (n == 0)
    return 0;
  qsort(v, n, sizeof *v, cmp_double);
  size_t rank = (size_t)ceil(p * (double)n);
  return v[rank > 0 ? rank - 1 : 0];
}

/* One group's running totals; latencies and TTFTs are collected for the quantiles. */
typedef struct {
  double turns, ok, retries, tokens, cost, calls, errors, latency_sum;
  double *lat, *ttft;
  size_t n_lat, n_ttft;
  double pass, fail, partial;
} acc_t;

static acc_t *acc_of(json_t *groups, const char *name) {
  json_t *v = json_object_get(groups, name);
  if (!v) {
    acc_t *a = calloc(1, sizeof *a);
    if (!a)
      return NULL;
    json_object_set_new(groups, name, v = json_integer((json_int_t)(intptr_t)a));
  }
  return (acc_t *)(intptr_t)json_integer_value(v);
}

static void push(double **arr, size_t *n, double x) {
  double *grown = realloc(*arr, (*n + 1) * sizeof **arr);
  if (grown) {
    *arr = grown;
    (*arr)[(*n)++] = x;
  }
}

static void add_row(acc_t *a, const json_t *row) {
  const char *kind = json_string_value(json_array_get(row, R_KIND));
  if (kind && strcmp(kind, "summary") == 0) {
    const char *v = json_string_value(json_array_get(row, R_VERDICT));
    v = v ? v : "";
    a->pass += strcmp(v, "PASS") == 0;
    a->fail += strcmp(v, "FAIL") == 0;
    a->partial += strcmp(v, "PARTIAL") == 0;
    return;
  }
  a->turns++;
  a->ok += json_integer_value(json_array_get(row, R_OK)) != 0;
  a->retries += (double)json_integer_value(json_array_get(row, R_RETRIES));
  a->tokens += (double)json_integer_value(json_array_get(row, R_TOKENS));
  a->cost += json_number_value(json_array_get(row, R_COST));
  a->calls += (double)json_integer_value(json_array_get(row, R_CALLS));
  a->errors += (double)json_integer_value(json_array_get(row, R_ERRORS));
  double lat = (double)json_integer_value(json_array_get(row, R_LATENCY));
  a->latency_sum += lat;
  push(&a->lat, &a->n_lat, lat);
  json_t *ttft = json_array_get(row, R_TTFT);
  if (json_is_integer(ttft))
    push(&a->ttft, &a->n_ttft, (double)json_integer_value(ttft));
}

static json_t *quantiles(double *v, size_t n) {
  double p50 = perf_quantile(v, n, 0.5), p95 = perf_quantile(v, n, 0.95);
  return json_pack("{s:f, s:f}", "p50", p50, "p95", p95);
}

/* The figures of a group (and frees it). */
static json_t *figures(acc_t *a) {
  json_t *f = json_pack("{s:f, s:f, s:f, s:o, s:o, s:f, s:f, s:{s:f, s:f, s:f}, s:f, s:f}", "turns", a->turns,
                        "success_rate", a->turns > 0 ? a->ok / a->turns : 0.0, "retries", a->retries, "ttft_ms",
                        quantiles(a->ttft, a->n_ttft), "latency_ms", quantiles(a->lat, a->n_lat), "tokens_per_s",
                        a->latency_sum > 0 ? a->tokens / (a->latency_sum / 1000.0) : 0.0, "cost_per_turn",
                        a->turns > 0 ? a->cost / a->turns : 0.0, "summaries", "PASS", a->pass, "FAIL", a->fail,
                        "PARTIAL", a->partial, "tool_calls", a->calls, "tool_errors", a->errors);
  /* Counts are whole numbers: say so in the JSON. */
  static const char *const counts[] = {"turns", "retries", "tool_calls", "tool_errors"};
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
    json_object_set_new(f, counts[i], json_integer((json_int_t)jx_num(f, counts[i], 0)));
  json_t *s = json_object_get(f, "summaries");
  const char *k;
  json_t *v;
  json_object_foreach(s, k, v) json_object_set_new(s, k, json_integer((json_int_t)json_real_value(v)));
  free(a->lat);
  free(a->ttft);
  free(a);
  return f;
}

static json_t *finish(json_t *groups) {
  json_t *out = json_object();
  const char *k;
  json_t *v;
  json_object_foreach(groups, k, v) json_object_set_new(out, k, figures((acc_t *)(intptr_t)json_integer_value(v)));
  json_decref(groups);
  return out;
}

json_t *perf_stats(store_t *store, const cadre_config_t *config, int64_t window_s) {
  json_t *rows = store_perf_rows(store, window_s > 0 ? util_wall_ms() - window_s * 1000 : 0);
  json_t *by_role = json_object(), *by_model = json_object();
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    const char *kind = json_string_value(json_array_get(row, R_KIND));
    const char *model = json_string_value(json_array_get(row, R_MODEL));
    const char *role = json_string_value(json_array_get(row, R_ROLE));
    if (kind && strcmp(kind, "summary") == 0) { /* kept under its profile: the model it ran on */
      const cadre_profile_t *p = config ? config_profile(config, model) : NULL;
      model = p && p->model ? p->model : model;
    }
    acc_t *r = acc_of(by_role, role ? role : "?"), *m = acc_of(by_model, model ? model : "?");
    if (r)
      add_row(r, row);
    if (m)
      add_row(m, row);
  }
  json_decref(rows);
  return json_pack("{s:I, s:o, s:o}", "window_s", (json_int_t)window_s, "by_role", finish(by_role), "by_model",
                   finish(by_model));
}

json_t *perf_costs(store_t *store, const cadre_config_t *config, int64_t window_s) {
  const cadre_profile_t *mp = config_main(config);
  json_t *rows = store_perf_rows(store, window_s > 0 ? util_wall_ms() - window_s * 1000 : 0);
  json_t *points = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    const char *kind = json_string_value(json_array_get(row, R_KIND));
    if (!kind || strcmp(kind, "turn") != 0)
      continue;
    double pt = (double)json_integer_value(json_array_get(row, R_PROMPT));
    double ct = (double)json_integer_value(json_array_get(row, R_TOKENS));
    double main_cost = (pt * mp->cost_per_1m_input + ct * mp->cost_per_1m_output) / 1e6;
    json_array_append_new(points, json_pack("[O, O, O, f, f]", json_array_get(row, R_TS), json_array_get(row, R_MODEL),
                                            json_array_get(row, R_ROLE), json_number_value(json_array_get(row, R_COST)),
                                            main_cost));
  }
  json_decref(rows);
  return json_pack("{s:s, s:o}", "main_model", mp->model, "points", points);
}
