/* obs.c: histograms and counters for the broker's metrics (see obs.h). */
#include "obs.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define OBS_SERIES_MAX 64 /* model x role pairs kept; later ones are counted as "other" */
#define OBS_REASONS_MAX 16

static const double LATENCY_BOUNDS[] = {0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
static const double TTFT_BOUNDS[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_LAT (sizeof LATENCY_BOUNDS / sizeof LATENCY_BOUNDS[0])
#define N_TTFT (sizeof TTFT_BOUNDS / sizeof TTFT_BOUNDS[0])

typedef struct {
  unsigned long long buckets[16]; /* cumulative per bound is computed when rendered */
  unsigned long long count;
  double sum;
} hist_t;

typedef struct {
  char model[96], role[48];
  hist_t latency, ttft;
} series_t;

struct obs {
  series_t series[OBS_SERIES_MAX];
  size_t n;
  struct {
    char reason[32];
    unsigned long long count;
  } refused[OBS_REASONS_MAX];
  size_t n_refused;
  unsigned long long rejected;
};

obs_t *obs_new(void) {
  return calloc(1, sizeof(obs_t));
}

void obs_destroy(obs_t **self_p) {
  if (self_p) {
    free(*self_p);
    *self_p = NULL;
  }
}

static void observe(hist_t *h, const double *bounds, size_t n, double v) {
  size_t i = 0;
  while (i < n && v > bounds[i])
    i++;
  h->buckets[i]++; /* i == n: above every bound (only +Inf) */
  h->count++;
  h->sum += v;
}

static series_t *series(obs_t *o, const char *model, const char *role) {
  model = model && model[0] ? model : "?";
  role = role && role[0] ? role : "?";
  for (size_t i = 0; i < o->n; i++)
    if (strcmp(o->series[i].model, model) == 0 && strcmp(o->series[i].role, role) == 0)
      return &o->series[i];
  if (o->n == OBS_SERIES_MAX) { /* full: the last one collects the rest */
    series_t *s = &o->series[OBS_SERIES_MAX - 1];
    strcpy(s->model, "other");
    strcpy(s->role, "other");
    return s;
  }
  series_t *s = &o->series[o->n++];
  strncpy(s->model, model, sizeof s->model - 1);
  strncpy(s->role, role, sizeof s->role - 1);
  return s;
}

void obs_turn(obs_t *o, const char *model, const char *role, double latency_s, double ttft_s) {
  if (!o)
    return;
  series_t *s = series(o, model, role);
  observe(&s->latency, LATENCY_BOUNDS, N_LAT, latency_s);
  if (ttft_s >= 0)
    observe(&s->ttft, TTFT_BOUNDS, N_TTFT, ttft_s);
}

void obs_refused(obs_t *o, const char *reason) {
  if (!o)
    return;
  for (size_t i = 0; i < o->n_refused; i++)
    if (strcmp(o->refused[i].reason, reason) == 0) {
      o->refused[i].count++;
      return;
    }
  if (o->n_refused < OBS_REASONS_MAX) {
    strncpy(o->refused[o->n_refused].reason, reason, sizeof o->refused[0].reason - 1);
    o->refused[o->n_refused++].count = 1;
  }
}

void obs_rejected(obs_t *o) {
  if (o)
    o->rejected++;
}

/* A label value with \, " and newlines escaped (the text format's rule). */
void obs_label(sbuf_t *out, const char *v) {
  for (; v && *v; v++) {
    if (*v == '\\' || *v == '"')
      sbuf_printf(out, "\\%c", *v);
    else if (*v == '\n')
      sbuf_puts(out, "\\n");
    else
      sbuf_add(out, v, 1);
  }
}

static void render_hist(sbuf_t *out, const char *name, const char *help, const double *bounds, size_t n, const obs_t *o,
                        size_t off) {
  sbuf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  for (size_t i = 0; i < o->n; i++) {
    const series_t *s = &o->series[i];
    const hist_t *h = (const hist_t *)((const char *)s + off);
    unsigned long long cum = 0;
    for (size_t k = 0; k <= n; k++) {
      cum += h->buckets[k];
      sbuf_printf(out, "%s_bucket{model=\"", name);
      obs_label(out, s->model);
      sbuf_puts(out, "\",role=\"");
      obs_label(out, s->role);
      if (k < n)
        sbuf_printf(out, "\",le=\"%g\"} %llu\n", bounds[k], cum);
      else
        sbuf_printf(out, "\",le=\"+Inf\"} %llu\n", cum);
    }
    const char *parts[] = {"sum", "count"};
    for (size_t k = 0; k < 2; k++) {
      sbuf_printf(out, "%s_%s{model=\"", name, parts[k]);
      obs_label(out, s->model);
      sbuf_puts(out, "\",role=\"");
      obs_label(out, s->role);
      if (k == 0)
        sbuf_printf(out, "\"} %.6f\n", h->sum);
      else
        sbuf_printf(out, "\"} %llu\n", h->count);
    }
  }
}

void obs_render(const obs_t *o, sbuf_t *out) {
  if (!o)
    return;
  render_hist(out, "cadre_turn_latency_seconds", "Time from a turn's start on a node to its answer.", LATENCY_BOUNDS,
              N_LAT, o, offsetof(series_t, latency));
  render_hist(out, "cadre_time_to_first_token_seconds", "Time from a turn's start on a node to its first delta.",
              TTFT_BOUNDS, N_TTFT, o, offsetof(series_t, ttft));
  sbuf_puts(out, "# HELP cadre_refused_connections_total Connections and hellos the broker refused, by reason.\n"
                 "# TYPE cadre_refused_connections_total counter\n");
  for (size_t i = 0; i < o->n_refused; i++)
    sbuf_printf(out, "cadre_refused_connections_total{reason=\"%s\"} %llu\n", o->refused[i].reason,
                o->refused[i].count);
  sbuf_printf(out,
              "# HELP cadre_rejected_frames_total Frames the broker could not decode, answered with an error.\n"
              "# TYPE cadre_rejected_frames_total counter\ncadre_rejected_frames_total %llu\n",
              o->rejected);
}
