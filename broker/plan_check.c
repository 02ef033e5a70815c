/* plan_check: validation, dependency order and the critical path (see plan.h).
 *
 * The steps become a small graph: step i has an edge to step j when j depends
 * on i ("i runs before j"), through the first step with the number named;
 * dependencies on missing steps are left out (validation reports them). Any
 * JSON is accepted: what is not a step reads as an empty one. */
#include "jx.h"
#include "plan.h"
#include "plan_span.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_MAX 2048
#define NAME_SHOWN 64 /* bytes of an unknown name quoted in a message */

/* Steps and their edges (dependency -> dependent), in adjacency lists. */
typedef struct {
  size_t n;
  json_int_t *num;
  double *secs;
  size_t *indeg;
  size_t *off, *adj;   /* dependents of i: adj[off[i] .. off[i + 1]) */
  size_t *roff, *radj; /* dependencies of i, the same way */
  size_t *by_num;      /* step indices by (number, index): lookups in O(log n) */
} graph_t;

/* ---- the graph ---------------------------------------------------------- */

/* Index of the first step numbered num, or n when there is none. */
static size_t index_of(const graph_t *g, json_int_t num) {
  size_t lo = 0, hi = g->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (g->num[g->by_num[mid]] < num)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < g->n && g->num[g->by_num[lo]] == num ? g->by_num[lo] : g->n;
}

/* Before a, by number then index: the order steps are taken in. */
static bool before(const graph_t *g, size_t a, size_t b) {
  return g->num[a] != g->num[b] ? g->num[a] < g->num[b] : a < b;
}

static const graph_t *sorting; /* qsort has no context argument */

static int by_number(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return before(sorting, x, y) ? -1 : before(sorting, y, x);
}

static void graph_free(graph_t *g) {
  free(g->num), free(g->secs), free(g->indeg);
  free(g->off), free(g->adj), free(g->roff), free(g->radj), free(g->by_num);
  memset(g, 0, sizeof *g);
}

/* Counts edges per dependency (into off) and fills indeg; returns the total. */
static size_t count_edges(graph_t *g, const json_t *steps) {
  size_t total = 0;
  for (size_t j = 0; j < g->n; j++) {
    const json_t *deps = jx_arr(json_array_get(steps, j), "dependencies");
    for (size_t k = 0; k < json_array_size(deps); k++) {
      size_t i = index_of(g, json_integer_value(json_array_get(deps, k)));
      if (i < g->n && json_is_integer(json_array_get(deps, k)))
        g->off[i + 1]++, g->indeg[j]++, total++;
    }
  }
  for (size_t i = 0; i < g->n; i++) {
    g->off[i + 1] += g->off[i];
    g->roff[i + 1] = g->roff[i] + g->indeg[i];
  }
  return total;
}

/* Fills the adjacency lists both ways, in step order. */
static void fill_edges(graph_t *g, const json_t *steps, size_t *pos, size_t *rpos) {
  memcpy(pos, g->off, g->n * sizeof *pos);
  memcpy(rpos, g->roff, g->n * sizeof *rpos);
  for (size_t j = 0; j < g->n; j++) {
    const json_t *deps = jx_arr(json_array_get(steps, j), "dependencies");
    for (size_t k = 0; k < json_array_size(deps); k++) {
      size_t i = index_of(g, json_integer_value(json_array_get(deps, k)));
      if (i < g->n && json_is_integer(json_array_get(deps, k)))
        g->adj[pos[i]++] = j, g->radj[rpos[j]++] = i;
    }
  }
}

/* Builds the graph of a plan; false when out of memory. */
static bool graph_build(graph_t *g, const json_t *plan) {
  const json_t *steps = jx_arr(plan, "steps");
  memset(g, 0, sizeof *g);
  g->n = json_array_size(steps);
  size_t n1 = g->n + 1;
  g->num = calloc(n1, sizeof *g->num);
  g->secs = calloc(n1, sizeof *g->secs);
  g->indeg = calloc(n1, sizeof *g->indeg);
  g->off = calloc(n1 + 1, sizeof *g->off);
  g->roff = calloc(n1 + 1, sizeof *g->roff);
  g->by_num = calloc(n1, sizeof *g->by_num);
  if (!g->num || !g->secs || !g->indeg || !g->off || !g->roff || !g->by_num)
    return graph_free(g), false;
  for (size_t i = 0; i < g->n; i++) {
    const json_t *st = json_array_get(steps, i);
    double s = jx_num(st, "estimated_seconds", 0);
    g->num[i] = jx_int(st, "number", 0);
    g->secs[i] = s > 0 ? s : 0;
    g->by_num[i] = i;
  }
  sorting = g;
  qsort(g->by_num, g->n, sizeof *g->by_num, by_number);
  size_t edges = count_edges(g, steps);
  size_t *pos = calloc(n1, sizeof *pos), *rpos = calloc(n1, sizeof *rpos);
  g->adj = calloc(edges + 1, sizeof *g->adj);
  g->radj = calloc(edges + 1, sizeof *g->radj);
  bool ok = pos && rpos && g->adj && g->radj;
  if (ok)
    fill_edges(g, steps, pos, rpos);
  else
    graph_free(g);
  free(pos);
  free(rpos);
  return ok;
}

/* The lowest-numbered step not in out_a or out_b (either may be NULL) with no
 * dependency left in indeg (may be NULL), or g->n when there is none. */
static size_t lowest_step(const graph_t *g, const bool *out_a, const bool *out_b, const size_t *indeg) {
  size_t best = g->n;
  for (size_t i = 0; i < g->n; i++)
    if (!(out_a && out_a[i]) && !(out_b && out_b[i]) && !(indeg && indeg[i]) &&
        (best == g->n || g->num[i] < g->num[best]))
      best = i;
  return best;
}

/* Adds step v to the min-heap h (n entries) in the order of before(). */
static void heap_add(const graph_t *g, size_t *h, size_t n, size_t v) {
  size_t i = n;
  for (; i > 0 && before(g, v, h[(i - 1) / 2]); i = (i - 1) / 2)
    h[i] = h[(i - 1) / 2];
  h[i] = v;
}

/* Takes the first step off the min-heap h (n > 0 entries). */
static size_t heap_take(const graph_t *g, size_t *h, size_t n) {
  size_t top = h[0], last = h[--n], i = 0;
  for (size_t c; (c = 2 * i + 1) < n; i = c) {
    if (c + 1 < n && before(g, h[c + 1], h[c]))
      c++;
    if (!before(g, h[c], last))
      break;
    h[i] = h[c];
  }
  h[i] = last;
  return top;
}

/* Kahn's order into out (indices), lowest number first among ready steps (a heap of them: O(n log n));
 * returns how many were placed. */
static size_t graph_order(const graph_t *g, size_t *out) {
  size_t *indeg = calloc(g->n + 1, sizeof *indeg), *ready = calloc(g->n + 1, sizeof *ready);
  size_t placed = 0, n_ready = 0;
  if (indeg && ready) {
    memcpy(indeg, g->indeg, g->n * sizeof *indeg);
    for (size_t i = 0; i < g->n; i++)
      if (!indeg[i])
        heap_add(g, ready, n_ready++, i);
    while (n_ready) {
      size_t best = heap_take(g, ready, n_ready--);
      out[placed++] = best;
      for (size_t e = g->off[best]; e < g->off[best + 1]; e++)
        if (--indeg[g->adj[e]] == 0)
          heap_add(g, ready, n_ready++, g->adj[e]);
    }
  }
  free(indeg);
  free(ready);
  return placed;
}

/* ---- order and critical path -------------------------------------------- */

/* Step numbers in an order that respects dependencies, or NULL on a cycle. */
json_t *plan_order(const json_t *plan) {
  graph_t g;
  if (!graph_build(&g, plan))
    return NULL;
  size_t *order = calloc(g.n + 1, sizeof *order);
  json_t *out = NULL;
  if (order && graph_order(&g, order) == g.n) {
    out = json_array();
    for (size_t i = 0; i < g.n; i++)
      json_array_append_new(out, json_integer(g.num[order[i]]));
  }
  free(order);
  graph_free(&g);
  return out;
}

/* The longest chain of estimated_seconds through the dependencies; -1 on a cycle. */
double plan_critical_seconds(const json_t *plan) {
  graph_t g;
  if (!graph_build(&g, plan))
    return -1;
  size_t *order = calloc(g.n + 1, sizeof *order);
  double *finish = calloc(g.n + 1, sizeof *finish), longest = -1;
  if (order && finish && graph_order(&g, order) == g.n) {
    longest = 0;
    for (size_t k = 0; k < g.n; k++) {
      size_t i = order[k];
      finish[i] += g.secs[i]; /* finish[i] held the latest finish of its dependencies */
      for (size_t e = g.off[i]; e < g.off[i + 1]; e++)
        if (finish[g.adj[e]] < finish[i])
          finish[g.adj[e]] = finish[i];
      if (finish[i] > longest)
        longest = finish[i];
    }
  }
  free(order);
  free(finish);
  graph_free(&g);
  return longest;
}

/* ---- validation messages ------------------------------------------------ */

/* Appends {"step": num or null, "message": printf(fmt, ...)} to errors. */
__attribute__((format(printf, 3, 4))) static void add_error(json_t *errors, const json_int_t *num, const char *fmt,
                                                            ...) {
  char msg[MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_t *e = json_object();
  json_object_set_new(e, "step", num ? json_integer(*num) : json_null());
  json_object_set_new(e, "message", plan_text_json((span_t){msg, strlen(msg)}, MSG_MAX, MSG_MAX)); /* cut names */
  json_array_append_new(errors, e);
}

/* "a, b, c" from an array of strings, or the keys of an object, cut to fit size. */
static void known_list(const json_t *names, char *out, size_t size) {
  size_t len = 0;
  out[0] = '\0';
  const char *key;
  const json_t *v;
  size_t i = 0;
  if (json_is_object(names)) {
    json_object_foreach((json_t *)names, key, v) {
      int k = snprintf(out + len, size - len, "%s%s", i++ ? ", " : "", key);
      len = k < 0 || (size_t)k >= size - len ? size - 1 : len + (size_t)k;
    }
    return;
  }
  json_array_foreach(names, i, v) {
    int k = snprintf(out + len, size - len, "%s%s", i ? ", " : "", json_string_value(v) ? json_string_value(v) : "?");
    len = k < 0 || (size_t)k >= size - len ? size - 1 : len + (size_t)k;
  }
}

static bool has_role(const json_t *roles, const char *role) {
  for (size_t i = 0; i < json_array_size(roles); i++) {
    const char *r = json_string_value(json_array_get(roles, i));
    if (r && strcmp(r, role) == 0)
      return true;
  }
  return false;
}

/* Unknown or missing role of one step. */
static void check_agent(json_t *errors, json_int_t num, const json_t *step, const json_t *roles) {
  const char *agent = jx_str(step, "agent", NULL);
  char known[MSG_MAX / 2];
  if (!json_is_array(roles))
    return;
  known_list(roles, known, sizeof known);
  if (!agent || !*agent)
    add_error(errors, &num, "Step %lld: no agent role given (known: %s)", (long long)num, known);
  else if (!has_role(roles, agent))
    add_error(errors, &num, "Step %lld: unknown agent role \"%.*s\" (known: %s)", (long long)num, NAME_SHOWN, agent,
              known);
}

/* Arguments of a tool step: text that is no JSON, no object, too long, required fields missing. */
static void check_arguments(json_t *errors, json_int_t num, const json_t *step, const char *tool,
                            const json_t *required) {
  const json_t *args = json_object_get(step, "arguments");
  const char *text = jx_str(step, "arguments_text", NULL);
  if (jx_bool(step, "arguments_truncated", false)) {
    add_error(errors, &num, "Step %lld: arguments are longer than %d bytes", (long long)num, PLAN_MAX_ARGS);
    return;
  }
  if (!json_is_object(args) && text) {
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j)
      add_error(errors, &num, "Step %lld: arguments are not valid JSON: %s", (long long)num, jerr.text);
    else
      add_error(errors, &num, "Step %lld: arguments are not a JSON object", (long long)num);
    json_decref(j);
    return;
  }
  if (args && !json_is_object(args) && !json_is_null(args)) {
    add_error(errors, &num, "Step %lld: arguments are not a JSON object", (long long)num);
    return;
  }
  size_t i;
  const json_t *field;
  json_array_foreach(required, i, field) {
    const char *name = json_string_value(field);
    if (name && !json_object_get(args, name))
      add_error(errors, &num, "Step %lld: %.*s needs \"%s\"", (long long)num, NAME_SHOWN, tool, name);
  }
}

/* Unknown tool of one step, then its arguments; agent steps (tool null) need no arguments. */
static void check_tool(json_t *errors, json_int_t num, const json_t *step, const json_t *tools) {
  const json_t *t = json_object_get(step, "tool");
  if (!t || json_is_null(t))
    return;
  const char *tool = json_string_value(t);
  char known[MSG_MAX / 2];
  if (!json_is_object(tools))
    return;
  if (!tool || !json_object_get(tools, tool)) {
    known_list(tools, known, sizeof known);
    add_error(errors, &num, "Step %lld: unknown tool \"%.*s\" (known: %s)", (long long)num, NAME_SHOWN,
              tool ? tool : "?", known);
    return;
  }
  check_arguments(errors, num, step, tool, json_object_get(tools, tool));
}

/* Dependencies of one step on itself or on steps that do not exist. */
static void check_deps(json_t *errors, json_int_t num, const json_t *step, const graph_t *g) {
  const json_t *deps = jx_arr(step, "dependencies");
  for (size_t k = 0; k < json_array_size(deps); k++) {
    const json_t *d = json_array_get(deps, k);
    json_int_t dn = json_integer_value(d);
    if (!json_is_integer(d))
      add_error(errors, &num, "Step %lld: a dependency is not a step number", (long long)num);
    else if (dn == num)
      add_error(errors, &num, "Step %lld: depends on itself", (long long)num);
    else if (index_of(g, dn) == g->n)
      add_error(errors, &num, "Step %lld: depends on Step %lld, which does not exist", (long long)num, (long long)dn);
  }
}

/* "two steps are numbered N", once per number. */
static void check_numbers(json_t *errors, const graph_t *g) {
  for (size_t i = 0; i < g->n; i++) {
    size_t first = index_of(g, g->num[i]), count = 0;
    for (size_t j = i; j < g->n && first == i; j++)
      count += g->num[j] == g->num[i];
    if (first == i && count == 2)
      add_error(errors, &g->num[i], "two steps are numbered %lld", (long long)g->num[i]);
    else if (first == i && count > 2)
      add_error(errors, &g->num[i], "%zu steps are numbered %lld", count, (long long)g->num[i]);
  }
}

/* ---- cycles ------------------------------------------------------------- */

/* Marks in seen what start reaches along edges (forward) or against them. */
static void reach(const graph_t *g, size_t start, bool forward, bool *seen, size_t *queue) {
  const size_t *off = forward ? g->off : g->roff, *adj = forward ? g->adj : g->radj;
  size_t head = 0, tail = 0;
  queue[tail++] = start;
  while (head < tail) {
    size_t v = queue[head++];
    for (size_t e = off[v]; e < off[v + 1]; e++)
      if (!seen[adj[e]] && adj[e] != start)
        seen[adj[e]] = true, queue[tail++] = adj[e];
  }
}

/* The shortest path start -> ... -> start along edges, as "Step a -> Step b -> Step a"; false if none. */
static bool cycle_text(const graph_t *g, size_t start, char *out, size_t size, size_t *queue, size_t *prev) {
  size_t head = 0, tail = 0, end = g->n;
  for (size_t i = 0; i < g->n; i++)
    prev[i] = g->n;
  queue[tail++] = start;
  while (head < tail && end == g->n) {
    size_t v = queue[head++];
    for (size_t e = g->off[v]; e < g->off[v + 1] && end == g->n; e++) {
      size_t u = g->adj[e];
      if (u == start && v != start)
        end = v;
      else if (u != start && prev[u] == g->n)
        prev[u] = v, queue[tail++] = u;
    }
  }
  if (end == g->n)
    return false;
  size_t len = 0, path_n = 0;
  for (size_t v = end; v != start; v = prev[v])
    queue[path_n++] = v; /* reversed */
  int k = snprintf(out, size, "Step %lld", (long long)g->num[start]);
  len = (size_t)k;
  for (size_t i = path_n; i-- > 0 && len < size;)
    len += (size_t)snprintf(out + len, size - len, " -> Step %lld", (long long)g->num[queue[i]]);
  if (len < size)
    snprintf(out + len, size - len, " -> Step %lld", (long long)g->num[start]);
  return true;
}

/* One error per group of steps caught in cycles (self-dependencies are reported apiece). */
static void check_cycles(json_t *errors, const graph_t *g) {
  size_t *order = calloc(g->n + 1, sizeof *order), *queue = calloc(g->n + 1, sizeof *queue);
  size_t *prev = calloc(g->n + 1, sizeof *prev);
  bool *placed = calloc(g->n + 1, sizeof *placed), *fw = calloc(g->n + 1, sizeof *fw);
  bool *bw = calloc(g->n + 1, sizeof *bw), *done = calloc(g->n + 1, sizeof *done);
  char text[MSG_MAX - 32];
  size_t n_placed = order ? graph_order(g, order) : g->n;
  if (queue && prev && placed && fw && bw && done && n_placed < g->n) {
    for (size_t k = 0; k < n_placed; k++)
      placed[order[k]] = true;
    for (;;) {
      size_t v = lowest_step(g, placed, done, NULL);
      if (v == g->n)
        break;
      memset(fw, 0, g->n * sizeof *fw);
      memset(bw, 0, g->n * sizeof *bw);
      reach(g, v, true, fw, queue);
      reach(g, v, false, bw, queue);
      done[v] = true;
      for (size_t i = 0; i < g->n; i++)
        done[i] = done[i] || (fw[i] && bw[i]); /* v's group: one message for it */
      if (cycle_text(g, v, text, sizeof text, queue, prev))
        add_error(errors, &g->num[v], "dependency cycle: %s", text);
    }
  }
  free(order), free(queue), free(prev), free(placed), free(fw), free(bw), free(done);
}

/* ---- validation --------------------------------------------------------- */

/* Checks a plan against the roles and tools that exist; an array of errors, empty when valid. */
json_t *plan_validate(const json_t *plan, const json_t *roles, const json_t *tools) {
  json_t *errors = json_array();
  const json_t *steps = jx_arr(plan, "steps");
  graph_t g;
  if (!json_array_size(steps)) {
    add_error(errors, NULL, "the plan has no steps");
    return errors;
  }
  if (jx_bool(plan, "truncated", false) || json_array_size(steps) > PLAN_MAX_STEPS) {
    add_error(errors, NULL, "the plan has more than %d steps", PLAN_MAX_STEPS);
    if (json_array_size(steps) > PLAN_MAX_STEPS)
      return errors; /* not worth checking further (and the checks are quadratic) */
  }
  if (!graph_build(&g, plan)) {
    add_error(errors, NULL, "out of memory while checking the plan");
    return errors;
  }
  check_numbers(errors, &g);
  for (size_t i = 0; i < g.n; i++) {
    const json_t *st = json_array_get(steps, i);
    if (!json_is_object(st)) {
      add_error(errors, NULL, "step %zu of the list is not an object", i + 1);
      continue;
    }
    check_deps(errors, g.num[i], st, &g);
    check_agent(errors, g.num[i], st, roles);
    check_tool(errors, g.num[i], st, tools);
  }
  check_cycles(errors, &g);
  graph_free(&g);
  return errors;
}
