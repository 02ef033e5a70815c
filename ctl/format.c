/* format.c: tables and documents for people. */
#include "format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"

static const char *str(const json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "-";
}

static long long num(const json_t *o, const char *key) {
  return (long long)json_integer_value(json_object_get(o, key));
}

void format_cost(char *buf, size_t len, double cost) {
  snprintf(buf, len, cost >= 1.0 ? "$%.2f" : cost >= 0.01 ? "$%.4f" : "$%.6f", cost);
}

/* "🔍 reviewer-1" padded to a column of width w (emoji counted as 2). */
static void id_cell(sbuf_t *b, const char *id, const char *role, int w) {
  const char *e = out_role_emoji(role);
  int pad = w - out_width(id, strlen(id));
  sbuf_printf(b, "%s%s %s%*s", e, out_width(e, strlen(e)) < 2 ? " " : "", id, pad > 0 ? pad : 0, "");
}

static int id_width(const json_t *rows) {
  int w = 5;
  size_t i;
  json_t *r;
  json_array_foreach(rows, i, r) {
    int n = out_width(str(r, "id"), strlen(str(r, "id")));
    if (n > w)
      w = n;
  }
  return w;
}

void format_agents(sbuf_t *b, const json_t *agents) {
  if (json_array_size(agents) == 0) {
    sbuf_puts(b, "no agents yet\n");
    return;
  }
  int w = id_width(agents);
  sbuf_printf(b, "   %-*s %-12s %-18s %-8s %8s %10s %10s %10s\n", w, "AGENT", "ROLE", "MODEL", "STATUS", "MESSAGES",
              "TOKENS IN", "TOKENS OUT", "COST");
  size_t i;
  json_t *a;
  json_array_foreach(agents, i, a) {
    json_t *u = json_object_get(a, "usage");
    char cost[32];
    format_cost(cost, sizeof cost, json_number_value(json_object_get(u, "cost")));
    id_cell(b, str(a, "id"), str(a, "role"), w);
    sbuf_printf(b, " %-12s %-18s %-8s %8lld %10lld %10lld %10s\n", str(a, "role"), str(a, "model"), str(a, "status"),
                num(a, "messages"), num(u, "prompt_tokens"), num(u, "completion_tokens"), cost);
  }
}

void format_stats(sbuf_t *b, const json_t *stats) {
  const json_t *agents = json_object_get(stats, "agents");
  int w = id_width(agents);
  sbuf_printf(b, "   %-*s %-12s %-18s %8s %10s %10s %10s\n", w, "AGENT", "ROLE", "MODEL", "MESSAGES", "TOKENS IN",
              "TOKENS OUT", "COST");
  size_t i;
  json_t *a;
  long long msgs = 0;
  json_array_foreach(agents, i, a) {
    char cost[32];
    format_cost(cost, sizeof cost, json_number_value(json_object_get(a, "cost")));
    id_cell(b, str(a, "id"), str(a, "role"), w);
    sbuf_printf(b, " %-12s %-18s %8lld %10lld %10lld %10s\n", str(a, "role"), str(a, "model"), num(a, "messages"),
                num(a, "prompt_tokens"), num(a, "completion_tokens"), cost);
    msgs += num(a, "messages");
  }
  const json_t *t = json_object_get(stats, "total");
  char total[32], equiv[32];
  format_cost(total, sizeof total, json_number_value(json_object_get(t, "cost")));
  format_cost(equiv, sizeof equiv, json_number_value(json_object_get(stats, "main_equivalent_cost")));
  sbuf_printf(b, "   %-*s %-12s %-18s %8lld %10lld %10lld %10s\n", w, "TEAM", "", "", msgs, num(t, "prompt_tokens"),
              num(t, "completion_tokens"), total);
  const char *mm = json_string_value(json_object_get(stats, "main_model"));
  sbuf_printf(b, "The same tokens on the main model%s%s%s: %s; the team cost %s: savings %.1f%%\n", mm ? " (" : "",
              mm ? mm : "", mm ? ")" : "", equiv, total,
              100.0 * json_number_value(json_object_get(stats, "savings")));
}

void format_json(sbuf_t *b, const json_t *v) {
  char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6) | JSON_PRESERVE_ORDER);
  if (s) {
    sbuf_puts(b, s);
    sbuf_puts(b, "\n");
  }
  free(s);
}
