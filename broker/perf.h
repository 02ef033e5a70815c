/* perf: how each role and model performs, from the store's records (kept
 * across restarts): turns, success rate, retries, time to first token and
 * latency (p50, p95), tokens per second, cost per turn, summaries by status,
 * tool calls and tool errors. For cadre stats, /metrics and the dashboard. */
#ifndef CADRE_BROKER_PERF_H
#define CADRE_BROKER_PERF_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

/* {window_s, by_role: {ROLE: figures}, by_model: {MODEL: figures}} over the
 * last window_s seconds (0: everything kept). Caller owns. */
json_t *perf_stats(store_t *store, const cadre_config_t *config, int64_t window_s);
/* Spend over time: {main_model, points: [[ts_ms, model, role, cost, cost_on_the_main_model]...]}, one a
 * turn, oldest first. Caller owns. */
json_t *perf_costs(store_t *store, const cadre_config_t *config, int64_t window_s);
/* The p-quantile (0..1, nearest rank) of n values, sorted in place; 0 when n is 0. */
double perf_quantile(double *v, size_t n, double p);

#endif
