/* plan_lines: classifies the lines of a [PLAN] block (see plan_lines.h).
 *
 * Heading marks, a bullet, a "1." before "Step 1" and leading decoration are
 * dropped first; then a line is a step header ("### Step 3: title", "Step 3 -
 * title", "## 3. title"), a known field ("- Agent: x", "**Agent:** x",
 * "Agent - x", any case), or text. Labels are matched after normalising
 * (lowercase, parentheses and '.' dropped, '_' and '-' as blanks). */
#include "plan_lines.h"

#include <string.h>

#define LABEL_MAX 40

/* Length of a bullet marker ("- ", "* ", "+ ", "• ") at the start of t, else 0. */
static size_t bullet_len(span_t t) {
  if (t.n > 1 && (t.p[0] == '-' || t.p[0] == '*' || t.p[0] == '+') && is_blank(t.p[1]))
    return 1;
  if (span_has_prefix(t, "\xe2\x80\xa2") || span_has_prefix(t, "\xe2\x80\xa3") || span_has_prefix(t, "\xe2\x97\xa6"))
    return 3;
  return 0;
}

/* Drops "2. " or "2) " before "Step 2" ("1. **Step 1: ...**"). */
static span_t drop_list_number(span_t t) {
  size_t j = 0;
  while (j < t.n && j < 3 && is_digit(t.p[j]))
    j++;
  if (!j || j + 1 >= t.n || (t.p[j] != '.' && t.p[j] != ')') || !is_blank(t.p[j + 1]))
    return t;
  span_t r = trim(span_from(t.p + j + 1, t.p + t.n));
  span_t w = r;
  while (w.n && is_decor(w.p[0]))
    w.p++, w.n--;
  return plan_ihas_prefix(w, "step") ? r : t;
}

/* True for lines made only of decoration: rules, fences, lone markers. */
static bool is_decoration(span_t t) {
  for (size_t i = 0; i < t.n; i++)
    if (!strchr("-*_=~#`> \t", t.p[i]))
      return false;
  return true;
}

/* True for a ``` or ~~~ fence line. */
bool plan_is_fence(span_t t) {
  t = trim(t);
  return span_has_prefix(t, "```") || span_has_prefix(t, "~~~");
}

/* Length of a separator dash ("-", "=", en or em dash) at p, else 0. */
static size_t dash_len(span_t s, size_t i) {
  if (i < s.n && (s.p[i] == '-' || s.p[i] == '='))
    return 1;
  span_t r = {s.p + i, s.n - i};
  return span_has_prefix(r, "\xe2\x80\x93") || span_has_prefix(r, "\xe2\x80\x94") ? 3 : 0;
}

/* The field a label names (F_*), or -1. */
static int label_field(span_t name) {
  static const char *const agent[] = {"agent",       "role",      "agent role", "assigned agent",
                                      "assignee",    "sub agent", "subagent",   "agent type",
                                      "assigned to", "executor",  NULL};
  static const char *const tool[] = {"tool", "tools", "tool name", "tool call", "tool to use", NULL};
  static const char *const args[] = {"arguments",  "argument", "args",       "tool arguments", "tool args",
                                     "parameters", "params",   "tool input", "arguments json", NULL};
  static const char *const deps[] = {"dependencies",  "dependency",   "depends on", "depends",      "deps", "requires",
                                     "prerequisites", "depends upon", "after",      "dependent on", NULL};
  static const char *const time[] = {
      "estimated time",     "estimate",      "time", "duration",          "est time",
      "estimated duration", "time estimate", "eta",  "estimated seconds", "expected time",
      "expected duration",  "estimated",     NULL};
  static const char *const profile[] = {"profile", "agent profile", "model profile", NULL};
  static const char *const desc[] = {"description", "task", "details", "task description", NULL};
  static const char *const title[] = {"workflow",      "workflow plan", "plan",      "title", "workflow title",
                                      "workflow name", "plan title",    "plan name", "name",  NULL};
  char norm[LABEL_MAX + 1];
  if (!span_label(name, norm, LABEL_MAX, SPAN_LABEL_NO_DOTS) || !norm[0])
    return -1;
  if (strstr(norm, "cost"))
    return F_COST;
  if (strstr(norm, "total"))
    return F_TOTAL;
  if (plan_in_list(norm, profile))
    return F_PROFILE;
  const char *const *lists[] = {agent, tool, args, deps, time, desc, title};
  for (int f = 0; f < 7; f++)
    if (plan_in_list(norm, lists[f]))
      return f;
  return -1;
}

/* Characters a label may hold ("Est. time (s)", "sub-agent", "N/A"). */
static bool is_label_char(char c) {
  return is_alpha(c) || is_digit(c) || c == ' ' || c == '_' || c == '.' || c == '(' || c == ')' || c == '/' || c == '-';
}

/* Reads "Label: value", "Label - value", "**Label:** value" from core into ln; false if no known field. */
static bool parse_field(span_t core, line_t *ln) {
  size_t i = 0;
  while (i < core.n && i <= LABEL_MAX && is_label_char(core.p[i]) &&
         !(i && is_blank(core.p[i - 1]) && dash_len(core, i)))
    i++;
  span_t name = trim(span_from(core.p, core.p + i));
  while (i < core.n && (is_decor(core.p[i]) || is_blank(core.p[i])))
    i++;
  size_t d = 0;
  if (i < core.n && core.p[i] == ':')
    d = 1;
  else if (!(i > 0 && i < core.n && is_blank(core.p[i - 1]) && (d = dash_len(core, i))))
    return false;
  int f = label_field(name);
  if (f < 0)
    return false;
  ln->kind = LN_FIELD;
  ln->field = f;
  span_t v = trim(span_from(core.p + i + d, core.p + core.n));
  while (v.n && (v.p[0] == '*' || v.p[0] == '_'))
    v.p++, v.n--; /* the end of "**Label:**" */
  ln->value = f == F_ARGS ? trim(v) : plan_strip_decor(v);
  return true;
}

/* The title after a step number: separator dropped, decoration and a trailing ':' trimmed. */
span_t plan_step_title(span_t s) {
  s = plan_strip_decor(s);
  while (s.n && (s.p[s.n - 1] == ':' || is_decor(s.p[s.n - 1]) || is_blank(s.p[s.n - 1])))
    s.n--;
  return s;
}

/* Reads "Step 3: title" (separators ':' '-' '.' ')' or dashes; "### 3. title" in headings) into ln. */
static bool parse_step(span_t core, line_t *ln) {
  size_t i = 0;
  bool word = plan_ihas_prefix(core, "step");
  if (word) {
    i = 4;
    while (i < core.n && (is_blank(core.p[i]) || core.p[i] == '#'))
      i++;
  } else if (!ln->heading) {
    return false;
  }
  if (!plan_read_step_number(core, &i, &ln->number))
    return false;
  size_t num_end = i;
  while (i < core.n && (is_decor(core.p[i]) || is_blank(core.p[i])))
    i++;
  size_t d = 0;
  if (i < core.n && strchr(":.)", core.p[i]))
    d = 1;
  else if (i < core.n)
    d = dash_len(core, i);
  if (!d && i < core.n && !(ln->heading && word && i > num_end))
    return false; /* "Step 1 output is..." is prose */
  if (d == 1 && core.p[i] == '.' && i + 1 < core.n && is_digit(core.p[i + 1]))
    return false; /* "Step 1.5" */
  if (!d && ln->bullet && !ln->heading)
    return false; /* "- Step 1" under a Dependencies label */
  ln->kind = LN_STEP;
  ln->title = plan_step_title(span_from(core.p + i + d, core.p + core.n));
  return true;
}

/* Classifies one line of the block (without its '\n'). */
void plan_classify(span_t raw, line_t *ln) {
  memset(ln, 0, sizeof *ln);
  span_t t = trim(raw);
  while (t.n && t.p[0] == '>')
    t = trim(span_from(t.p + 1, t.p + t.n));
  ln->kind = t.n ? LN_SKIP : LN_BLANK;
  if (!t.n || is_decoration(t) || plan_is_fence(t))
    return;
  for (; t.n && t.p[0] == '#'; t.p++, t.n--)
    ln->level += ln->level < 100;
  t = trim(t);
  size_t b = bullet_len(t);
  ln->bullet = b > 0;
  t = trim(span_from(t.p + b, t.p + t.n));
  t = drop_list_number(t);
  ln->heading = ln->level > 0 || (t.n > 4 && span_has_prefix(t, "**") && t.p[t.n - 1] == '*' && t.p[t.n - 2] == '*');
  while (t.n && is_decor(t.p[0]))
    t.p++, t.n--;
  ln->core = trim(t);
  if (!ln->core.n)
    return;
  ln->kind = LN_TEXT;
  if (!parse_step(ln->core, ln))
    parse_field(ln->core, ln);
}
