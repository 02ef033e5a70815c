/* metrics.c: the broker's state in the Prometheus text format (version
 * 0.0.4): nodes, turns, agents, tokens and cost by model, workflow steps,
 * and what obs.c observed (latency and time-to-first-token histograms,
 * refused connections). Served by http.c at /metrics. */
#include <string.h>

#include "internal.h"
#include "jx.h"
#include "obs.h"
#include "perf.h"
#include "workflow.h"

static void head(sbuf_t *out, const char *name, const char *type, const char *help) {
  sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One gauge per connected node: its slots, or (busy) the slots in use. */
static void node_gauge(broker_t *b, sbuf_t *out, const char *name, const char *help, bool busy) {
  head(out, name, "gauge", help);
  for (peer_t *p = b->peers; p; p = p->next)
    if (!p->dead && p->role == PEER_NODE) {
      sbuf_printf(out, "%s{node=\"", name);
      obs_label(out, p->name);
      sbuf_printf(out, "\"} %d\n", busy ? p->busy : p->slots);
    }
}

static void nodes_part(broker_t *b, sbuf_t *out) {
  int nodes = 0, controllers = 0;
  for (peer_t *p = b->peers; p; p = p->next)
    if (!p->dead)
      p->role == PEER_NODE ? nodes++ : controllers++;
  head(out, "cadre_nodes", "gauge", "Agent daemons connected.");
  sbuf_printf(out, "cadre_nodes %d\n", nodes);
  head(out, "cadre_controllers", "gauge", "Controllers (cadre) connected.");
  sbuf_printf(out, "cadre_controllers %d\n", controllers);
  node_gauge(b, out, "cadre_node_slots", "Turn slots of each node.", false);
  node_gauge(b, out, "cadre_node_busy_slots", "Slots of each node running a turn or step.", true);
}

static void turns_part(broker_t *b, sbuf_t *out) {
  int queued = 0, running = 0;
  for (turn_t *t = b->turns; t; t = t->next)
    t->node ? running++ : queued++;
  head(out, "cadre_turns", "gauge", "Turns waiting for a node (queued) and on one (running).");
  sbuf_printf(out, "cadre_turns{state=\"queued\"} %d\ncadre_turns{state=\"running\"} %d\n", queued, running);
}

/* Agents by status, and tokens and cost by model, from the store. */
static void agents_part(broker_t *b, sbuf_t *out) {
  json_t *stats = agents_stats(b), *agents = json_object_get(stats, "agents");
  json_t *by_status = json_object(), *by_model = json_object();
  size_t i;
  json_t *a;
  json_array_foreach(agents, i, a) {
    const char *st = jx_str(a, "status", "?"), *model = jx_str(a, "model", "?");
    json_object_set_new(by_status, st, json_integer(jx_int(by_status, st, 0) + 1));
    json_t *m = json_object_get(by_model, model);
    if (!m)
      json_object_set_new(by_model, model, m = json_pack("{s:I, s:I, s:f}", "p", 0, "c", 0, "cost", 0.0));
    json_object_set_new(m, "p", json_integer(jx_int(m, "p", 0) + jx_int(a, "prompt_tokens", 0)));
    json_object_set_new(m, "c", json_integer(jx_int(m, "c", 0) + jx_int(a, "completion_tokens", 0)));
    json_object_set_new(m, "cost", json_real(jx_num(m, "cost", 0) + jx_num(a, "cost", 0)));
  }
  const char *k;
  json_t *v;
  head(out, "cadre_agents", "gauge", "Agents (the main agent and sub-agents) by status.");
  json_object_foreach(by_status, k, v) {
    sbuf_puts(out, "cadre_agents{status=\"");
    obs_label(out, k);
    sbuf_printf(out, "\"} %lld\n", (long long)json_integer_value(v));
  }
  head(out, "cadre_tokens_total", "counter", "Tokens used, by model and kind (prompt, completion).");
  json_object_foreach(by_model, k, v) {
    for (int kind = 0; kind < 2; kind++) {
      sbuf_puts(out, "cadre_tokens_total{model=\"");
      obs_label(out, k);
      sbuf_printf(out, "\",kind=\"%s\"} %lld\n", kind ? "completion" : "prompt",
                  (long long)jx_int(v, kind ? "c" : "p", 0));
    }
  }
  head(out, "cadre_cost_usd_total", "counter", "Cost in USD, by model (the config's prices).");
  json_object_foreach(by_model, k, v) {
    sbuf_puts(out, "cadre_cost_usd_total{model=\"");
    obs_label(out, k);
    sbuf_printf(out, "\"} %.6f\n", jx_num(v, "cost", 0));
  }
  json_decref(by_status);
  json_decref(by_model);
  json_decref(stats);
}

static void steps_part(broker_t *b, sbuf_t *out) {
  json_t *by = json_object();
  for (workflow_t *w = b->workflows; w; w = w->next)
    for (size_t i = 0; i < w->n_steps; i++) {
      const char *st = wf_step_status_name(w->steps[i].status);
      json_object_set_new(by, st, json_integer(jx_int(by, st, 0) + 1));
    }
  head(out, "cadre_workflow_steps", "gauge", "Steps of every workflow the broker holds, by status.");
  const char *k;
  json_t *v;
  json_object_foreach(by, k, v)
      sbuf_printf(out, "cadre_workflow_steps{status=\"%s\"} %lld\n", k, (long long)json_integer_value(v));
  json_decref(by);
}

/* The rows of one figure of perf_stats, for both groupings: name{role="..."} and name{model="..."};
 * {p50, p95} as quantile="0.5"|"0.95"; with status, that count of the group's summaries. */
static void perf_rows(sbuf_t *out, const json_t *perf, const char *name, const char *key, const char *status) {
  static const char *const bys[] = {"role", "model"}, *const qs[] = {"p50", "p95"}, *const ql[] = {"0.5", "0.95"};
  for (size_t i = 0; i < 2; i++) {
    const char *k;
    json_t *f;
    json_object_foreach(jx_obj(perf, i ? "by_model" : "by_role"), k, f) {
      json_t *v = json_object_get(f, key);
      bool quantiles = json_is_object(v) && !status;
      for (size_t q = 0; q < (quantiles ? 2u : 1u); q++) {
        sbuf_printf(out, "%s{%s=\"", name, bys[i]);
        obs_label(out, k);
        if (quantiles)
          sbuf_printf(out, "\",quantile=\"%s\"} %g\n", ql[q], jx_num(v, qs[q], 0));
        else if (status)
          sbuf_printf(out, "\",status=\"%s\"} %g\n", status, jx_num(v, status, 0));
        else
          sbuf_printf(out, "\"} %g\n", json_number_value(v));
      }
    }
  }
}

/* The agents' performance per role and per model, from the store (kept across restarts). */
static void perf_part(broker_t *b, sbuf_t *out) {
  json_t *p = perf_stats(b->store, b->opts.config, 0);
  static const struct {
    const char *name, *key, *help;
  } g[] = {
      {"cadre_agent_turns", "turns", "Turns ended, by role and by model."},
      {"cadre_agent_success_rate", "success_rate", "Share of turns that ended well."},
      {"cadre_agent_retries", "retries", "Attempts beyond the first, over all turns."},
      {"cadre_agent_ttft_ms", "ttft_ms", "Time to first token in ms (quantiles 0.5 and 0.95)."},
      {"cadre_agent_latency_ms", "latency_ms", "Turn latency in ms (quantiles 0.5 and 0.95)."},
      {"cadre_agent_tokens_per_second", "tokens_per_s", "Completion tokens per second of turn time."},
      {"cadre_agent_cost_per_turn_usd", "cost_per_turn", "Mean cost of a turn in USD."},
      {"cadre_agent_tool_calls", "tool_calls", "Tool calls made in turns."},
      {"cadre_agent_tool_errors", "tool_errors", "Tool calls that failed."},
  };
  for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
    head(out, g[i].name, "gauge", g[i].help);
    perf_rows(out, p, g[i].name, g[i].key, NULL);
  }
  static const char *const st[] = {"PASS", "FAIL", "PARTIAL"};
  head(out, "cadre_agent_summaries", "gauge", "Summaries delivered, by status.");
  for (size_t s = 0; s < 3; s++)
    perf_rows(out, p, "cadre_agent_summaries", "summaries", st[s]);
  json_decref(p);
}

void metrics_render(broker_t *b, sbuf_t *out) {
  head(out, "cadre_build_info", "gauge", "The broker's version.");
  sbuf_printf(out, "cadre_build_info{version=\"%s\"} 1\n", CADRE_VERSION);
  nodes_part(b, out);
  turns_part(b, out);
  agents_part(b, out);
  steps_part(b, out);
  perf_part(b, out);
  obs_render(b->obs, out);
}
