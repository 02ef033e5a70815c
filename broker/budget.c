/* budget.c: spending limits the broker enforces (see budget.h). */
#include "budget.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "jx.h"

typedef struct {
  int64_t tokens; /* 0: no limit */
  double cost;    /* 0: no limit */
} limit_t;

/* A scope's limit: set for it (cadre budget, approve --budget-*), else, for
 * a session, its role's in the config. False when it has none. */
static bool limit_of(broker_t *b, const char *scope, const char *role, limit_t *out) {
  if (store_budget_get(b->store, scope, &out->tokens, &out->cost) == 0)
    return out->tokens > 0 || out->cost > 0;
  json_t *r = role ? json_object_get(b->opts.config->budgets, role) : NULL;
  out->tokens = jx_int(r, "tokens", 0);
  out->cost = jx_num(r, "cost", 0);
  return out->tokens > 0 || out->cost > 0;
}

static void spent_of(broker_t *b, const char *scope, limit_t *out) {
  out->tokens = 0;
  out->cost = 0;
  int64_t wf = strncmp(scope, "workflow:", 9) == 0 ? strtoll(scope + 9, NULL, 10) : 0;
  store_spent(b->store, wf ? NULL : scope, wf, &out->tokens, &out->cost);
}

static json_t *pair(int64_t tokens, double cost) {
  return json_pack("{s:I, s:f}", "tokens", (json_int_t)tokens, "cost", cost);
}

json_t *budget_report(broker_t *b, const char *scope) {
  store_session_t row;
  bool session = strncmp(scope, "workflow:", 9) != 0;
  if (session && store_session_row(b->store, scope, &row) < 0)
    return NULL;
  limit_t lim = {0, 0}, used;
  bool has = limit_of(b, scope, session ? row.role : NULL, &lim);
  spent_of(b, scope, &used);
  json_t *o = json_pack("{s:s, s:o, s:o}", "scope", scope, "limit", has ? pair(lim.tokens, lim.cost) : json_null(),
                        "spent", pair(used.tokens, used.cost));
  if (has)
    json_object_set_new(
        o, "left",
        json_pack("{s:o, s:o}", "tokens",
                  lim.tokens > 0 ? json_integer(lim.tokens > used.tokens ? lim.tokens - used.tokens : 0) : json_null(),
                  "cost", lim.cost > 0 ? json_real(lim.cost > used.cost ? lim.cost - used.cost : 0) : json_null()));
  return o;
}

/* Checks one scope; false (detail set) when it is spent. */
#define BUDGET_MIN_ANSWER 16 /* a request that leaves less room than this for its answer is not sent */

static bool scope_allows(broker_t *b, const char *scope, const char *role, const cadre_profile_t *p, int64_t prompt,
                         int *cap, char *detail, size_t dlen) {
  limit_t lim, used;
  if (!limit_of(b, scope, role, &lim))
    return true;
  spent_of(b, scope, &used);
  const char *what = strncmp(scope, "workflow:", 9) == 0 ? "workflow" : "agent";
  double prompt_cost = p ? (double)prompt * p->cost_per_1m_input / 1e6 : 0;
  int64_t room = lim.tokens > 0 ? lim.tokens - used.tokens - prompt : INT_MAX;
  double money = lim.cost > 0 ? lim.cost - used.cost - prompt_cost : 1e18;
  double buys = p && p->cost_per_1m_output > 0 ? money / (p->cost_per_1m_output / 1e6) : 1e18;
  if (room < BUDGET_MIN_ANSWER) {
    snprintf(detail, dlen,
             "the budget of %s %s (with its sub-agents) is spent: %lld of %lld tokens used, and the next request "
             "alone takes about %lld; raise it with cadre budget %s --tokens N",
             what, scope, (long long)used.tokens, (long long)lim.tokens, (long long)prompt, scope);
    return false;
  }
  if (money <= 0 || buys < BUDGET_MIN_ANSWER) {
    snprintf(detail, dlen,
             "the budget of %s %s (with its sub-agents) is spent: $%.4f of $%.4f used, and the next request alone "
             "costs about $%.4f; raise it with cadre budget %s --cost USD",
             what, scope, used.cost, lim.cost, prompt_cost, scope);
    return false;
  }
  /* What the answer may still take: the tokens left after the prompt, or what the money left buys. */
  if (room < *cap)
    *cap = (int)room;
  if (buys < *cap)
    *cap = (int)buys;
  return true;
}

bool budget_allows(broker_t *b, const char *session, const cadre_profile_t *p, int64_t prompt, int *cap, char *detail,
                   size_t dlen) {
  *cap = INT_MAX;
  char scope[STORE_ID_MAX];
  snprintf(scope, sizeof scope, "%s", session);
  for (int depth = 0; depth < 32 && scope[0]; depth++) {
    store_session_t row;
    if (store_session_row(b->store, scope, &row) < 0)
      break;
    if (!scope_allows(b, scope, row.role, p, prompt, cap, detail, dlen))
      return false;
    if (row.in_workflow) {
      char wf[64];
      snprintf(wf, sizeof wf, "workflow:%lld", (long long)row.wf_plan);
      if (!scope_allows(b, wf, NULL, p, prompt, cap, detail, dlen))
        return false;
    }
    if (!row.parent[0] || strcmp(row.parent, scope) == 0)
      break;
    snprintf(scope, sizeof scope, "%s", row.parent);
  }
  return true;
}

/* True when out already has a report for scope. */
static bool listed(const json_t *out, const char *scope) {
  size_t i;
  json_t *r;
  json_array_foreach(out, i, r) if (strcmp(jx_str(r, "scope", ""), scope) == 0) return true;
  return false;
}

#define BUDGET_ROLE_SHOWN 100 /* sessions listed for their role's budget from the config */

json_t *budget_all(broker_t *b) {
  json_t *out = json_array(), *scopes = store_budget_scopes(b->store);
  size_t i;
  json_t *s;
  json_array_foreach(scopes, i, s) {
    json_t *r = budget_report(b, json_string_value(s));
    if (r)
      json_array_append_new(out, r);
  }
  json_decref(scopes);
  if (!json_object_size(b->opts.config->budgets))
    return out;
  /* Sessions held to their role's budget from the config (none set for them): what they spent and have left. */
  json_t *sessions = store_sessions(b->store);
  size_t shown = 0;
  json_array_foreach(sessions, i, s) {
    const char *id = jx_str(s, "id", ""), *role = jx_str(s, "role", "");
    if (shown >= BUDGET_ROLE_SHOWN || !json_object_get(b->opts.config->budgets, role) || listed(out, id))
      continue;
    json_t *r = budget_report(b, id);
    if (r && !json_is_null(json_object_get(r, "limit")))
      json_array_append_new(out, r), shown++;
    else
      json_decref(r);
  }
  json_decref(sessions);
  return out;
}
