/* plan: reads [PLAN] blocks into plans (see plan.h). The other parts:
 * plan_lines.c classifies lines, plan_text.c reads values, plan_span.c holds
 * the helpers under both, plan_check.c validates and orders, plan_edit.c
 * edits and instantiates, plan_format.c shows a plan for approval (the
 * layering is drawn in plan_span.h).
 *
 * The text is searched backwards for the last block that holds steps; the
 * block is read line by line. Arguments may run over several lines (a ```json
 * fence, or JSON whose braces have not balanced yet); a raw newline inside a
 * JSON string becomes "\n". Everything copied out is valid UTF-8 (invalid
 * bytes become '?') and capped. */
#include "jx.h"
#include "plan.h"
#include "plan_lines.h"
#include "plan_text.h"
#include "sbuf.h"

#include <stdlib.h>
#include <string.h>

enum { A_NONE, A_PENDING, A_FENCE_WAIT, A_JSON, A_PLAIN, A_SKIP_FENCE };

typedef struct {
  json_t *plan, *steps, *step; /* step: the one being read, not yet in steps */
  int step_level;
  bool title_set, truncated, deps_pending;
  sbuf_t desc, args;           /* capped at PLAN_MAX_DESC and PLAN_MAX_ARGS */
  int astate;                  /* A_*: where collecting the arguments stands */
  bool a_str, a_esc, a_fenced; /* JSON scanning state */
  int a_depth;
} parser_t;

/* ---- buffers ------------------------------------------------------------ */

static span_t buf_span(const sbuf_t *b) {
  return (span_t){sbuf_str(b), b->len};
}

/* ---- finding the block -------------------------------------------------- */

/* Length of an opening "[PLAN]" (any case, blanks inside) at p, else 0. */
static size_t open_tag_len(const char *p) {
  const char *q = plan_skip_spaces(p + 1);
  span_t s = {q, strnlen(q, 4)};
  if (!plan_ihas_prefix(s, "plan"))
    return 0;
  q = plan_skip_spaces(q + 4);
  return *q == ']' ? (size_t)(q + 1 - p) : 0;
}

/* Length of a closing "[/PLAN]" or "[END PLAN]" at p, else 0. */
static size_t close_tag_len(const char *p) {
  const char *q = plan_skip_spaces(p + 1);
  span_t s = {q, strnlen(q, 4)};
  if (*q == '/')
    q = plan_skip_spaces(q + 1);
  else if (plan_ihas_prefix(s, "end"))
    q = plan_skip_spaces(q + 3 + (q[3] == '_' || q[3] == '-'));
  else
    return 0;
  s = (span_t){q, strnlen(q, 4)};
  if (!plan_ihas_prefix(s, "plan"))
    return 0;
  q = plan_skip_spaces(q + 4);
  return *q == ']' ? (size_t)(q + 1 - p) : 0;
}

/* True when only blanks and markdown decoration stand between the line start and p. */
static bool at_line_start(const char *text, const char *p) {
  while (p > text && strchr(" \t*_>#`", p[-1]))
    p--;
  return p == text || p[-1] == '\n';
}

/* The last opening tag before end (beginning a line when line_start), or NULL. */
static const char *prev_open(const char *text, const char *end, bool line_start, size_t *len) {
  for (const char *q = end; q > text;) {
    q--;
    if (*q == '[' && (*len = open_tag_len(q)) && (!line_start || at_line_start(text, q)))
      return q;
  }
  return NULL;
}

/* End of the block whose body starts at body: the next closing or opening tag, or the end of the text. */
static const char *block_end(const char *body) {
  for (const char *q = strchr(body, '['); q; q = strchr(q + 1, '['))
    if (close_tag_len(q) || open_tag_len(q))
      return q;
  return body + strlen(body);
}

/* ---- steps -------------------------------------------------------------- */

/* Starts a step from its header line; fields not given stay empty (agent ""), null or []. */
static void step_begin(parser_t *ps, const line_t *ln) {
  ps->step = json_object();
  ps->step_level = ln->level;
  json_object_set_new(ps->step, "number", json_integer(ln->number));
  json_object_set_new(ps->step, "title", plan_text_json(ln->title, PLAN_MAX_TITLE, 4 * PLAN_MAX_TITLE));
  json_object_set_new(ps->step, "agent", json_string(""));
  json_object_set_new(ps->step, "tool", json_null());
  json_object_set_new(ps->step, "arguments", json_null());
  json_object_set_new(ps->step, "dependencies", json_array());
}

/* Appends one description line. */
static void desc_add(parser_t *ps, span_t s) {
  s = trim(s);
  if (!s.n)
    return;
  if (ps->desc.len)
    sbuf_add(&ps->desc, "\n", 1);
  sbuf_add(&ps->desc, s.p, s.n);
}

/* Removes commas before '}' or ']' outside strings (a common slip); in place. */
static void drop_trailing_commas(char *s) {
  bool str = false, esc = false;
  for (char *p = s; *p; p++) {
    if (str) {
      esc = !esc && *p == '\\';
      str = esc || *p != '"';
      continue;
    }
    if (*p == '"') {
      str = true;
      continue;
    }
    if (*p != ',')
      continue;
    const char *q = p + 1;
    while (*q == ' ' || *q == '\n' || *q == '\t' || *q == '\r')
      q++;
    if (*q == '}' || *q == ']')
      *p = ' ';
  }
}

/* Parses arguments, retrying once with trailing commas dropped and 'single' quotes as "double". */
static json_t *args_load(const char *text) {
  json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
  if (j)
    return j;
  char *fix = strdup(text);
  if (!fix)
    return NULL;
  if (!strchr(fix, '"'))
    for (char *p = fix; *p; p++)
      if (*p == '\'')
        *p = '"';
  drop_trailing_commas(fix);
  j = json_loads(fix, JSON_DECODE_ANY, NULL);
  free(fix);
  return j;
}

/* Stores the collected arguments in the step: an object, null for none, or the text as written. */
static void args_store(parser_t *ps) {
  span_t t = trim(buf_span(&ps->args));
  while (t.n && (t.p[t.n - 1] == '`' || t.p[t.n - 1] == '\n' || is_blank(t.p[t.n - 1])))
    t.n--;
  while (t.n && (t.p[0] == '\n' || is_blank(t.p[0])))
    t.p++, t.n--;
  if (ps->step && ps->args.full) {
    json_object_set_new(ps->step, "arguments", json_null());
    json_object_set_new(ps->step, "arguments_text", plan_text_json(t, PLAN_MAX_ARGS, PLAN_MAX_ARGS));
    json_object_set_new(ps->step, "arguments_truncated", json_true());
  } else if (ps->step && t.n && !plan_is_no_tool(t)) {
    json_t *txt = plan_text_json(t, PLAN_MAX_ARGS, PLAN_MAX_ARGS);
    json_t *j = args_load(json_string_value(txt));
    if (j && json_is_object(j)) {
      json_object_set_new(ps->step, "arguments", j);
      json_decref(txt);
    } else {
      json_decref(j);
      json_object_set_new(ps->step, "arguments", json_null());
      json_object_set_new(ps->step, "arguments_text", txt);
    }
  }
  sbuf_reset(&ps->args);
}

/* Feeds text to the JSON being collected; true when its outer braces closed (the rest is dropped). */
static bool args_feed(parser_t *ps, span_t s) {
  for (size_t i = 0; i < s.n; i++) {
    char c = s.p[i];
    if (ps->a_str) {
      ps->a_esc = !ps->a_esc && c == '\\';
      ps->a_str = ps->a_esc || c != '"';
    } else if (c == '"') {
      ps->a_str = true;
    } else if (c == '{' || c == '[') {
      ps->a_depth++;
    } else if ((c == '}' || c == ']') && --ps->a_depth <= 0) {
      sbuf_add(&ps->args, s.p, i + 1);
      return true;
    }
  }
  sbuf_add(&ps->args, s.p, s.n);
  return false;
}

/* Starts collecting JSON at s (which begins with '{' or '['); stores it when it closes on this line. */
static void args_json(parser_t *ps, span_t s) {
  ps->astate = A_JSON;
  ps->a_depth = 0;
  ps->a_str = ps->a_esc = false;
  if (args_feed(ps, s)) {
    ps->astate = ps->a_fenced ? A_SKIP_FENCE : A_NONE;
    args_store(ps);
  }
}

/* An "Arguments:" value: JSON (maybe in backticks or a fence, maybe running on), none, or text. */
static void args_begin(parser_t *ps, span_t v) {
  sbuf_reset(&ps->args);
  json_object_del(ps->step, "arguments_text");
  json_object_set_new(ps->step, "arguments", json_null());
  v = trim(v);
  size_t ticks = 0;
  while (ticks < v.n && v.p[ticks] == '`')
    ticks++;
  ps->a_fenced = ticks >= 3;
  v = trim(span_from(v.p + ticks, v.p + v.n));
  if (ps->a_fenced)
    while (v.n && is_alpha(v.p[0]))
      v.p++, v.n--; /* ```json */
  v = trim(v);
  if (v.n && (v.p[0] == '{' || v.p[0] == '[')) {
    args_json(ps, v);
  } else if (!v.n) {
    ps->astate = ps->a_fenced ? A_FENCE_WAIT : A_PENDING;
  } else {
    sbuf_add(&ps->args, v.p, v.n);
    args_store(ps);
  }
}

/* True when a line inside collected arguments looks like the plan going on (a step or a field). */
static bool looks_like_plan(span_t raw) {
  line_t ln;
  plan_classify(raw, &ln);
  return ln.kind == LN_STEP || (ln.kind == LN_FIELD && ln.field != F_DESC && ln.field != F_TITLE);
}

/* Handles a line while arguments are being collected; false when the line is for the plan instead. */
static bool args_line(parser_t *ps, span_t raw) {
  span_t t = trim(raw);
  switch (ps->astate) {
  case A_SKIP_FENCE: ps->astate = A_NONE; return plan_is_fence(t);
  case A_PENDING:
  case A_FENCE_WAIT:
    if (!t.n)
      return true;
    if (plan_is_fence(t) && ps->astate == A_PENDING) {
      ps->astate = A_FENCE_WAIT, ps->a_fenced = true;
      return true;
    }
    if (plan_is_fence(t) || (ps->astate == A_PENDING && t.p[0] != '{' && t.p[0] != '[')) {
      ps->astate = A_NONE; /* no arguments after all */
      return plan_is_fence(t);
    }
    if (t.p[0] == '{' || t.p[0] == '[')
      args_json(ps, t);
    else
      ps->astate = A_PLAIN, sbuf_add(&ps->args, t.p, t.n);
    return true;
  case A_JSON:
  case A_PLAIN:
    if (plan_is_fence(t) || looks_like_plan(raw)) {
      args_store(ps);
      ps->astate = A_NONE;
      return plan_is_fence(t);
    }
    if (ps->astate == A_PLAIN) {
      sbuf_add(&ps->args, "\n", 1), sbuf_add(&ps->args, raw.p, raw.n);
      return true;
    }
    sbuf_add(&ps->args, ps->a_str ? "\\n" : "\n", ps->a_str ? 2 : 1); /* a raw newline inside a string */
    if (args_feed(ps, raw)) {
      ps->astate = ps->a_fenced ? A_SKIP_FENCE : A_NONE;
      args_store(ps);
    }
    return true;
  default: return false;
  }
}

/* Ends the current step: pending arguments, description, default estimate; appended while under the cap. */
static void step_end(parser_t *ps) {
  if (!ps->step)
    return;
  if (ps->astate == A_JSON || ps->astate == A_PLAIN)
    args_store(ps);
  ps->astate = A_NONE;
  ps->deps_pending = false;
  json_t *st = ps->step;
  if (ps->desc.len) {
    json_object_set_new(st, "description", plan_text_json(buf_span(&ps->desc), PLAN_MAX_DESC, PLAN_MAX_DESC));
    if (!json_string_length(json_object_get(st, "title"))) {
      span_t d = buf_span(&ps->desc);
      const char *nl = memchr(d.p, '\n', d.n);
      json_object_set_new(st, "title", plan_text_json(nl ? span_from(d.p, nl) : d, PLAN_MAX_TITLE, 4 * PLAN_MAX_TITLE));
    }
  }
  sbuf_reset(&ps->desc);
  if (!json_object_get(st, "estimated_seconds")) {
    json_object_set_new(st, "estimated_seconds", json_integer(PLAN_DEFAULT_SECONDS));
    json_object_set_new(st, "estimated_seconds_default", json_true());
  }
  if (json_array_size(ps->steps) < PLAN_MAX_STEPS)
    json_array_append_new(ps->steps, st);
  else
    ps->truncated = true, json_decref(st);
  ps->step = NULL;
}

/* Sets the step's estimate from a value; unreadable: left for the default. */
static void read_estimate(json_t *step, span_t v) {
  char tmp[128];
  size_t n = v.n < sizeof tmp - 1 ? v.n : sizeof tmp - 1;
  memcpy(tmp, v.p, n);
  tmp[n] = '\0';
  double s = plan_parse_duration(tmp);
  if (s >= 0)
    json_object_set_new(step, "estimated_seconds", plan_number_json(s));
}

/* "- Profile: name": the profile that runs the step, as written (profile names keep their case). */
static void plan_set_profile(json_t *step, span_t v) {
  json_t *name = plan_text_json(plan_strip_decor(v), PLAN_NAME_MAX, PLAN_NAME_MAX);
  if (json_string_length(name) && !strchr(json_string_value(name), ' '))
    json_object_set_new(step, "profile", name);
  else
    json_decref(name);
}

/* A field line inside a step. */
static void step_field(parser_t *ps, const line_t *ln) {
  json_t *st = ps->step;
  switch (ln->field) {
  case F_AGENT: json_object_set_new(st, "agent", plan_name_json(ln->value)); break;
  case F_PROFILE: plan_set_profile(st, ln->value); break;
  case F_TOOL:
    json_object_set_new(st, "tool", plan_is_no_tool(ln->value) ? json_null() : plan_name_json(ln->value));
    if (json_is_string(json_object_get(st, "tool")) && !json_string_length(json_object_get(st, "tool")))
      json_object_set_new(st, "tool", json_null());
    break;
  case F_ARGS: args_begin(ps, ln->value); break;
  case F_DEPS:
    json_object_set_new(st, "dependencies", plan_deps_json(ln->value));
    ps->deps_pending = !ln->value.n;
    break;
  case F_TIME: read_estimate(st, ln->value); break;
  case F_DESC: desc_add(ps, ln->value); break;
  default:
    if (ln->bullet || ln->field == F_TOTAL || ln->heading)
      return;
    desc_add(ps, ln->core); /* "Plan: ..." inside a step is prose */
  }
}

/* Totals ("## Total Estimated Time: 195s", "## Cost Estimate: $0.06") and the title, anywhere. */
static bool plan_field(parser_t *ps, const line_t *ln) {
  json_t *stated = jx_obj(ps->plan, "stated");
  if (ln->field == F_TOTAL || (ln->field == F_COST && (!ps->step || !ln->bullet || ln->heading))) {
    bool cost = ln->field == F_COST || memchr(ln->value.p, '$', ln->value.n);
    char tmp[128];
    size_t n = ln->value.n < sizeof tmp - 1 ? ln->value.n : sizeof tmp - 1;
    memcpy(tmp, ln->value.p, n);
    tmp[n] = '\0';
    double v = cost ? plan_parse_cost(ln->value) : plan_parse_duration(tmp);
    if (v >= 0)
      json_object_set_new(stated, cost ? "cost" : "seconds", plan_number_json(v));
    return true;
  }
  if (ln->field == F_TITLE && !ps->step && !ps->title_set && json_array_size(ps->steps) == 0 && ln->value.n) {
    json_object_set_new(ps->plan, "title", plan_text_json(ln->value, PLAN_MAX_TITLE, 4 * PLAN_MAX_TITLE));
    ps->title_set = true;
    return true;
  }
  return false;
}

/* A "- Step 1" line under an empty "Dependencies:" label. */
static bool deps_line(parser_t *ps, const line_t *ln) {
  if (!ps->deps_pending || !ln->bullet || ln->kind != LN_TEXT)
    return false;
  span_t c = ln->core;
  if (!plan_ihas_prefix(c, "step") && !(c.n && is_digit(c.p[0])))
    return false;
  json_t *more = plan_deps_json(c), *deps = jx_arr(ps->step, "dependencies");
  for (size_t i = 0; i < json_array_size(more) && json_array_size(deps) < PLAN_MAX_DEPS; i++)
    json_array_append(deps, json_array_get(more, i));
  json_decref(more);
  return true;
}

/* Reads one line of the block. */
static void feed_line(parser_t *ps, span_t raw) {
  if (ps->step && ps->astate != A_NONE && args_line(ps, raw))
    return;
  line_t ln;
  plan_classify(raw, &ln);
  if (ln.kind == LN_STEP) {
    step_end(ps);
    step_begin(ps, &ln);
    return;
  }
  if (ln.kind == LN_BLANK || ln.kind == LN_SKIP)
    return;
  if (ln.kind == LN_FIELD && plan_field(ps, &ln))
    return;
  if (ps->step && deps_line(ps, &ln))
    return;
  ps->deps_pending = false;
  if (ps->step && ln.kind == LN_TEXT && ln.level > 0 && (ps->step_level == 0 || ln.level <= ps->step_level)) {
    step_end(ps); /* "## Notes" after the steps */
    return;
  }
  if (ps->step && ln.kind == LN_FIELD)
    step_field(ps, &ln);
  else if (ps->step)
    desc_add(ps, ln.core);
  else if (ln.heading && !ps->title_set && !json_array_size(ps->steps)) {
    json_object_set_new(ps->plan, "title",
                        plan_text_json(plan_step_title(ln.core), PLAN_MAX_TITLE, 4 * PLAN_MAX_TITLE));
    ps->title_set = json_string_length(json_object_get(ps->plan, "title")) > 0;
  }
}

/* Reads a block body into a plan; NULL when it holds no steps. */
static json_t *parse_block(span_t body) {
  parser_t ps = {0};
  ps.plan = json_object();
  ps.steps = json_array();
  ps.desc.max = PLAN_MAX_DESC;
  ps.args.max = PLAN_MAX_ARGS;
  json_object_set_new(ps.plan, "title", json_string(""));
  json_object_set_new(ps.plan, "steps", ps.steps);
  json_object_set_new(ps.plan, "stated", json_pack("{s:n,s:n}", "seconds", "cost"));
  for (const char *p = body.p, *end = body.p + body.n; p < end;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    feed_line(&ps, span_from(p, e));
    p = nl ? nl + 1 : end;
  }
  step_end(&ps);
  sbuf_free(&ps.desc);
  sbuf_free(&ps.args);
  if (!json_array_size(ps.steps)) {
    json_decref(ps.plan);
    return NULL;
  }
  if (!ps.title_set)
    json_object_set_new(ps.plan, "title", json_string("Untitled workflow"));
  if (ps.truncated)
    json_object_set_new(ps.plan, "truncated", json_true());
  return ps.plan;
}

static void set_err(char *err, size_t errlen, const char *msg) {
  if (err && errlen) {
    strncpy(err, msg, errlen - 1);
    err[errlen - 1] = '\0';
  }
}

/* The last block holding steps, trying blocks whose tag begins a line first; *found when any tag exists. */
static json_t *parse_last(const char *text, bool line_start, bool *found) {
  size_t len;
  const char *end = text + strlen(text);
  for (const char *o; (o = prev_open(text, end, line_start, &len)); end = o) {
    *found = true;
    const char *body = o + len;
    json_t *plan = parse_block(span_from(body, block_end(body)));
    if (plan)
      return plan;
  }
  return NULL;
}

/* The last [PLAN]...[/PLAN] block of text as a plan, or NULL (err empty: no block; else why). */
json_t *plan_parse(const char *text, char *err, size_t errlen) {
  bool found = false;
  set_err(err, errlen, "");
  if (!text)
    return NULL;
  json_t *plan = parse_last(text, true, &found);
  if (!plan)
    plan = parse_last(text, false, &found);
  if (!plan && found)
    set_err(err, errlen, "the [PLAN] block has no steps (expected \"### Step 1: title\" lines)");
  return plan;
}
