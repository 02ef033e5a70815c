/* Unit tests for common/config.c: defaults, a full file, every error class,
 * prompt lookup, the wire and display views. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#ifndef CADRE_SOURCE_ROOT
#error "build with -DCADRE_SOURCE_ROOT=\"<repo>\""
#endif
#define SRC_PROMPTS CADRE_SOURCE_ROOT "/prompts"

typedef struct {
  char dir[256]; /* short, so that paths built from it fit PATH_MAX */
  char err[1024];
} fx_t;

/* ---- fixtures ---------------------------------------------------------- */

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (!fx)
    return -1;
  snprintf(fx->dir, sizeof fx->dir, "%s/cadre-config-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(fx->dir))
    return -1;
  unsetenv("CADRE_PROMPTS_DIR");
  *state = fx;
  return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static int teardown(void **state) {
  fx_t *fx = *state;
  nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  unsetenv("CADRE_PROMPTS_DIR");
  return 0;
}

/* Writes text into dir/name (creating one level of subdirectory), with every
 * ' turned into " so that JSON in the tests stays readable. Returns the path. */
static const char *put(const fx_t *fx, const char *name, const char *text, bool quotes, char *path, size_t len) {
  snprintf(path, len, "%s/%s", fx->dir, name);
  char *slash = strrchr(path, '/');
  if (slash > path + strlen(fx->dir)) {
    *slash = '\0';
    mkdir(path, 0700);
    *slash = '/';
  }
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (const char *s = text; *s; s++)
    fputc(quotes && *s == '\'' ? '"' : *s, f);
  fclose(f);
  return path;
}

static const char *put_json(const fx_t *fx, const char *name, const char *json, char *path, size_t len) {
  return put(fx, name, json, true, path, len);
}

/* ---- built-in defaults ------------------------------------------------- */

static void test_defaults_have_the_seed_team(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = config_load(NULL, SRC_PROMPTS, fx->err, sizeof fx->err);
  assert_non_null(c);
  assert_null(c->path);
  assert_int_equal(c->n_profiles, 6);
  const cadre_profile_t *m = config_main(c);
  assert_non_null(m);
  assert_string_equal(m->name, "main_agent");
  assert_string_equal(m->model, "gpt-oss:120b");
  assert_string_equal(m->provider, "ollama");
  assert_string_equal(m->url, "http://localhost:11434/v1");
  assert_int_equal(m->max_tokens, 4096);
  assert_true(m->stream);
  assert_null(m->api_key);
  struct {
    const char *role;
    double temperature;
  } subs[] = {{"reviewer", 0.3}, {"researcher", 0.5}, {"implementer", 0.6}, {"tester", 0.4}, {"optimizer", 0.5}};
  for (size_t i = 0; i < 5; i++) {
    const cadre_profile_t *p = config_profile_for_role(c, subs[i].role);
    assert_non_null(p);
    assert_string_equal(p->model, "gpt-oss:20b");
    assert_float_equal(p->temperature, subs[i].temperature, 1e-9);
    assert_int_equal(p->max_tokens, 2048);
    assert_float_equal(m->cost_per_1m_input, 6 * p->cost_per_1m_input, 1e-9);
    assert_float_equal(m->cost_per_1m_output, 6 * p->cost_per_1m_output, 1e-9);
    assert_non_null(p->system_prompt);
    assert_non_null(strstr(p->system_prompt, "[SUMMARY]"));
    assert_non_null(strstr(p->system_prompt, "[/SUMMARY]"));
  }
  assert_float_equal(m->temperature, 0.7, 1e-9);
  assert_non_null(m->system_prompt);
  assert_non_null(strstr(m->system_prompt, "[PLAN]"));
  assert_non_null(strstr(m->system_prompt, "## Workflow:"));
  assert_string_equal(c->tools.approval, "mutating"); /* writes and commands ask first */
  config_destroy(&c);
}

static void test_defaults_spawning_rules(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = config_load(NULL, SRC_PROMPTS, fx->err, sizeof fx->err);
  assert_non_null(c);
  assert_int_equal(c->n_keywords, 4);
  const char *want[][2] = {{"review", "reviewer_agent"},
                           {"test", "tester_agent"},
                           {"research", "researcher_agent"},
                           {"optimize", "optimizer_agent"}};
  for (size_t i = 0; i < 4; i++) {
    assert_string_equal(c->keywords[i].keyword, want[i][0]);
    assert_string_equal(c->keywords[i].profile, want[i][1]);
  }
  assert_false(c->auto_spawn_on_keywords);
  assert_true(c->require_confirmation);
  assert_int_equal(c->max_concurrent_agents, 5);
  config_destroy(&c);
  assert_null(c);
  config_destroy(&c); /* safe twice */
  config_destroy(NULL);
}

static void test_defaults_without_prompts_have_no_prompt(void **state) {
  fx_t *fx = *state;
  setenv("CADRE_PROMPTS_DIR", fx->dir, 1); /* an empty directory wins the search */
  cadre_config_t *c = config_load(NULL, NULL, fx->err, sizeof fx->err);
  assert_non_null(c);
  assert_null(config_main(c)->system_prompt);
  assert_null(config_main(c)->system_prompt_path);
  /* The other roles still get a prompt that asks for their [SUMMARY]. */
  for (size_t i = 0; i < c->n_profiles; i++) {
    const cadre_profile_t *p = &c->profiles[i];
    if (strcmp(p->role, "main") == 0)
      continue;
    assert_null(p->system_prompt_path);
    assert_non_null(p->system_prompt);
    assert_non_null(strstr(p->system_prompt, "[SUMMARY]"));
    assert_non_null(strstr(p->system_prompt, p->role));
  }
  config_destroy(&c);
}

/* ---- a full valid file ------------------------------------------------- */

static const char FULL[] =
    "{ 'agents': {\n"
    "    'boss': { 'provider': 'openai', 'model': 'gpt-4o', 'api_key': 'sk-SECRET-123',\n"
    "              'role': 'main', 'temperature': 1, 'max_tokens': 8000, 'context_tokens': 32768, 'summarize_context': "
    "false, 'stream': false,\n"
    "              'turn_timeout_s': 90,\n"
    "              'system_prompt_file': 'mine/boss.txt', 'cost_per_1m_input': 2.5,\n"
    "              'cost_per_1m_output': 10, 'future_field': {'x': 1} },\n"
    "    'rev': { 'provider': 'lm_studio', 'model': 'qwen', 'role': 'reviewer', 'api_key': null,\n"
    "             'temperature': null },\n"
    "    'sec': { 'provider': 'vllm', 'url': 'http://gpu1:8000/v1', 'model': 'm', 'role': 'security-2',\n"
    "             'api_key': '' },\n"
    "    'loc': { 'model': 'llama3', 'role': 'tester', 'system_prompt_file': 'prompts/tester_prompt.txt' }\n"
    "  },\n"
    "  'spawning_rules': { 'keywords': { 'review': 'rev', 'audit': 'sec' },\n"
    "                      'auto_spawn_on_keywords': true, 'require_confirmation': false,\n"
    "                      'unknown': 1 },\n"
    "  'max_concurrent_agents': 3,\n"
    "  'some_future_section': [1, 2, 3]\n"
    "}\n";

static cadre_config_t *load_full(fx_t *fx) {
  char path[PATH_MAX], prompt[PATH_MAX];
  put(fx, "mine/boss.txt", "You are the boss. [PLAN]\n", false, prompt, sizeof prompt);
  put_json(fx, "full.json", FULL, path, sizeof path);
  cadre_config_t *c = config_load(path, SRC_PROMPTS, fx->err, sizeof fx->err);
  if (!c)
    fail_msg("config_load: %s", fx->err);
  return c;
}

static void test_full_file_fields(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = load_full(fx);
  assert_int_equal(c->n_profiles, 4);
  assert_string_equal(c->profiles[0].name, "boss"); /* file order is kept */
  assert_string_equal(c->profiles[3].name, "loc");
  const cadre_profile_t *b = config_main(c);
  assert_string_equal(b->name, "boss");
  assert_string_equal(b->provider, "openai");
  assert_string_equal(b->url, "https://api.openai.com/v1");
  assert_string_equal(b->api_key, "sk-SECRET-123");
  assert_float_equal(b->temperature, 1.0, 1e-9);
  assert_int_equal(b->max_tokens, 8000);
  assert_int_equal(b->context_tokens, 32768);
  assert_int_equal(b->turn_timeout_s, 90);
  assert_false(b->summarize_context);
  assert_false(b->stream);
  assert_float_equal(b->cost_per_1m_input, 2.5, 1e-9);
  assert_float_equal(b->cost_per_1m_output, 10, 1e-9);
  assert_non_null(strstr(c->path, "full.json"));
  config_destroy(&c);
}

static void test_full_file_defaults_per_field(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = load_full(fx);
  const cadre_profile_t *r = config_profile(c, "rev");
  assert_string_equal(r->url, "http://localhost:1234/v1");
  assert_null(r->api_key);
  assert_float_equal(r->temperature, 0.7, 1e-9);
  assert_int_equal(r->max_tokens, 2048);
  assert_int_equal(r->context_tokens, 0); /* not said: the node asks the server */
  assert_int_equal(r->turn_timeout_s, 0); /* not said: the node's --turn-timeout */
  assert_true(r->summarize_context);
  assert_true(r->stream);
  assert_float_equal(r->cost_per_1m_input, 0, 0);
  const cadre_profile_t *s = config_profile(c, "sec");
  assert_string_equal(s->url, "http://gpu1:8000/v1");
  assert_string_equal(s->role, "security-2");
  assert_null(s->api_key); /* "" means none */
  /* No security-2_prompt.txt anywhere: the built-in prompt, which asks for the [SUMMARY]. */
  assert_null(s->system_prompt_path);
  assert_non_null(s->system_prompt);
  assert_non_null(strstr(s->system_prompt, "You are the security-2 agent"));
  assert_non_null(strstr(s->system_prompt, "[SUMMARY]"));
  assert_non_null(strstr(s->system_prompt, "[/SUMMARY]"));
  const cadre_profile_t *l = config_profile(c, "loc");
  assert_string_equal(l->provider, "ollama");
  assert_string_equal(l->url, "http://localhost:11434/v1");
  assert_null(config_profile(c, "nope"));
  assert_null(config_profile_for_role(c, "optimizer"));
  config_destroy(&c);
}

static void test_full_file_spawning_rules(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = load_full(fx);
  assert_int_equal(c->n_keywords, 2);
  assert_string_equal(c->keywords[0].keyword, "review");
  assert_string_equal(c->keywords[0].profile, "rev");
  assert_string_equal(c->keywords[1].keyword, "audit");
  assert_true(c->auto_spawn_on_keywords);
  assert_false(c->require_confirmation);
  assert_int_equal(c->max_concurrent_agents, 3);
  config_destroy(&c);
}

static void test_minimal_file_uses_defaults(void **state) {
  fx_t *fx = *state;
  char path[PATH_MAX];
  put_json(fx, "min.json", "{'agents': {'m': {'model': 'x', 'role': 'main'}}}", path, sizeof path);
  cadre_config_t *c = config_load(path, NULL, fx->err, sizeof fx->err);
  assert_non_null(c);
  assert_int_equal(c->n_keywords, 0);
  assert_false(c->auto_spawn_on_keywords);
  assert_false(c->require_confirmation);
  assert_int_equal(c->max_concurrent_agents, 5);
  config_destroy(&c);
}

/* ---- prompt lookup ----------------------------------------------------- */

static void test_prompt_beside_config_file(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = load_full(fx);
  const cadre_profile_t *b = config_main(c);
  assert_string_equal(b->system_prompt_file, "mine/boss.txt");
  assert_string_equal(b->system_prompt, "You are the boss. [PLAN]\n");
  char want[PATH_MAX];
  snprintf(want, sizeof want, "%s/mine/boss.txt", fx->dir);
  assert_string_equal(b->system_prompt_path, want);
  config_destroy(&c);
}

static void test_prompt_falls_back_to_prompts_dir(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = load_full(fx);
  /* "prompts/tester_prompt.txt" is not beside full.json: found in SRC_PROMPTS by name. */
  const cadre_profile_t *l = config_profile(c, "loc");
  assert_string_equal(l->system_prompt_path, SRC_PROMPTS "/tester_prompt.txt");
  assert_non_null(strstr(l->system_prompt, "[SUMMARY]"));
  /* No system_prompt_file: <role>_prompt.txt from the prompts dir. */
  const cadre_profile_t *r = config_profile(c, "rev");
  assert_null(r->system_prompt_file);
  assert_string_equal(r->system_prompt_path, SRC_PROMPTS "/reviewer_prompt.txt");
  config_destroy(&c);
}

static void test_prompt_absolute_path_and_prompts_dir_env(void **state) {
  fx_t *fx = *state;
  char path[PATH_MAX], prompt[PATH_MAX], json[PATH_MAX + 128];
  put(fx, "abs/p.txt", "absolute", false, prompt, sizeof prompt);
  put(fx, "envdir/main_prompt.txt", "from env", false, path, sizeof path);
  snprintf(json, sizeof json,
           "{'agents': {'m': {'model': 'x', 'role': 'main'},"
           " 'r': {'model': 'x', 'role': 'reviewer', 'system_prompt_file': '%s'}}}",
           prompt);
  put_json(fx, "abs.json", json, path, sizeof path);
  char envdir[PATH_MAX];
  snprintf(envdir, sizeof envdir, "%s/envdir", fx->dir);
  setenv("CADRE_PROMPTS_DIR", envdir, 1);
  cadre_config_t *c = config_load(path, NULL, fx->err, sizeof fx->err);
  assert_non_null(c);
  assert_string_equal(config_profile(c, "r")->system_prompt, "absolute");
  assert_string_equal(config_main(c)->system_prompt, "from env");
  config_destroy(&c);
}

static void test_find_prompts_dir(void **state) {
  fx_t *fx = *state;
  char buf[PATH_MAX];
  setenv("CADRE_PROMPTS_DIR", fx->dir, 1);
  assert_int_equal(config_find_prompts_dir(buf, sizeof buf), 0);
  assert_string_equal(buf, fx->dir);
  assert_int_equal(config_find_prompts_dir(buf, 4), -ENAMETOOLONG);
  setenv("CADRE_PROMPTS_DIR", "/nonexistent/cadre/prompts", 1);
  assert_int_equal(config_find_prompts_dir(buf, sizeof buf), 0); /* skipped: a later one exists */
  assert_string_not_equal(buf, "/nonexistent/cadre/prompts");
  struct stat st;
  assert_int_equal(stat(buf, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
}

static void test_example_configs_load(void **state) {
  fx_t *fx = *state;
  const char *files[] = {"config.json", "config-openai.json", "config-lmstudio.json"};
  for (size_t i = 0; i < 3; i++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/examples/%s", CADRE_SOURCE_ROOT, files[i]);
    cadre_config_t *c = config_load(path, SRC_PROMPTS, fx->err, sizeof fx->err);
    if (!c)
      fail_msg("%s", fx->err);
    assert_int_equal(c->n_profiles, 6);
    for (size_t j = 0; j < c->n_profiles; j++)
      assert_non_null(c->profiles[j].system_prompt);
    config_destroy(&c);
  }
}

/* ---- errors ------------------------------------------------------------ */

typedef struct {
  const char *name;
  const char *json; /* ' stands for " */
  const char *want; /* substring of the error, after the file's directory */
} err_case_t;

#define MAIN_WITH(extra) "{'agents': {'main_agent': {'role': 'main', 'model': 'm'" extra "}}}"
#define MCP_WITH(servers, extra) \
  "{'mcp_servers': " servers ", 'agents': {'main_agent': {'role': 'main', 'model': 'm'" extra "}}}"

static const err_case_t ERR_CASES[] = {
    {"mcp server unknown to a profile", MAIN_WITH(", 'mcp_servers': ['fs']"),
     "c.json: agents.main_agent.mcp_servers[0]: unknown MCP server \"fs\"; define it in the top-level mcp_servers"},
    {"profile mcp_servers not a list", MCP_WITH("{'fs': {'command': 'x'}}", ", 'mcp_servers': 'fs'"),
     "c.json: agents.main_agent.mcp_servers: expected an array of MCP server names"},
    {"mcp_servers not an object", MCP_WITH("[]", ""), "c.json: mcp_servers: expected an object"},
    {"mcp server with neither command nor url", MCP_WITH("{'fs': {'args': []}}", ""),
     "c.json: mcp_servers.fs: needs a command (a stdio server) or a url (streamable HTTP)"},
    {"mcp server with both", MCP_WITH("{'fs': {'command': 'a', 'url': 'http://h'}}", ""),
     "c.json: mcp_servers.fs: give either command (stdio) or url (streamable HTTP), not both"},
    {"mcp args not strings", MCP_WITH("{'fs': {'command': 'a', 'args': ['x', 2]}}", ""),
     "c.json: mcp_servers.fs.args[1]: expected a string, got 2"},
    {"mcp env value not a string (not echoed)", MCP_WITH("{'fs': {'command': 'a', 'env': {'K': 12345}}}", ""),
     "c.json: mcp_servers.fs.env.K: expected a string, got a number"},
    {"mcp url not http", MCP_WITH("{'fs': {'url': 'ftp://h'}}", ""),
     "c.json: mcp_servers.fs.url: expected an http:// or https:// URL"},
    {"mcp timeout out of range", MCP_WITH("{'fs': {'command': 'a', 'timeout_s': 0}}", ""),
     "c.json: mcp_servers.fs.timeout_s: expected an integer from 1 to 3600, got 0"},
    {"mcp server name with the separator", MCP_WITH("{'a__b': {'command': 'a'}}", ""),
     "c.json: mcp_servers.a__b: a server name is 1 to 32 letters"},
    {"policy names a tool of an unknown mcp server",
     "{'mcp_servers': {'fs': {'command': 'a'}}, 'agents': {'m': {'role': 'main', 'model': 'm'}}, "
     "'tools': {'policy': {'main': ['other__x']}}}",
     "c.json: tools.policy.main[0]: unknown tool \"other__x\""},
    {"network not a boolean", MAIN_WITH(", 'network': 'yes'"),
     "c.json: agents.main_agent.network: expected true or false, got \"yes\""},
    {"policy network not a boolean",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'tools': {'policy': {'tester': {'network': 1}}}}",
     "c.json: tools.policy.tester.network: expected true or false, got 1"},
    {"policy object with an unknown tool",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'tools': {'policy': {'tester': {'tools': ['rm']}}}}",
     "c.json: tools.policy.tester.tools[0]: unknown tool \"rm\""},
    {"syntax error with line and column", "{\n  'agents': {\n    'a': 1,\n  }\n}\n", "c.json:4:3: JSON syntax error: "},
    {"duplicate key", "{'agents': {}, 'agents': {}}", "c.json:1:23: JSON syntax error: duplicate object key"},
    {"empty file", "", "c.json:1:0: JSON syntax error: "},
    {"top level not an object", "[1]", "c.json: expected a JSON object at the top level, got an array"},
    {"agents missing", "{'agent': {}}", "c.json: agents: missing; expected an object of agent profiles"},
    {"agents not an object", "{'agents': []}", "c.json: agents: expected an object of agent profiles, got an array"},
    {"profile not an object", "{'agents': {'main_agent': 'gpt'}}",
     "c.json: agents.main_agent: expected an object (an agent profile), got \"gpt\""},
    {"empty profile name", "{'agents': {'': {}}}", "c.json: agents: profile name \"\" must be 1 to 64"},
    {"no main", "{'agents': {'r': {'role': 'reviewer', 'model': 'm'}}}",
     "c.json: agents: no profile has role \"main\""},
    {"no profiles", "{'agents': {}}", "c.json: agents: no profile has role \"main\""},
    {"two mains", "{'agents': {'a': {'role': 'main', 'model': 'm'}, 'b': {'role': 'main', 'model': 'm'}}}",
     "c.json: agents: profiles \"a\" and \"b\" both have role \"main\""},
    {"provider not a string", MAIN_WITH(", 'provider': 5"),
     "c.json: agents.main_agent.provider: expected a non-empty string, got 5"},
    {"provider empty", MAIN_WITH(", 'provider': ''"),
     "c.json: agents.main_agent.provider: expected a non-empty string, got \"\""},
    {"url missing for unknown provider", MAIN_WITH(", 'provider': 'vllm'"),
     "c.json: agents.main_agent.url: missing; provider \"vllm\" has no default URL"},
    {"url without scheme", MAIN_WITH(", 'url': 'localhost:11434/v1'"),
     "c.json: agents.main_agent.url: expected an http:// or https:// URL, got \"localhost:11434/v1\""},
    {"url ftp", MAIN_WITH(", 'url': 'ftp://host/v1'"),
     "c.json: agents.main_agent.url: expected an http:// or https:// URL"},
    {"url without host", MAIN_WITH(", 'url': 'http://'"),
     "c.json: agents.main_agent.url: expected an http:// or https:// URL"},
    {"url with space", MAIN_WITH(", 'url': 'http://a b/v1'"),
     "c.json: agents.main_agent.url: expected an http:// or https:// URL"},
    {"url not a string", MAIN_WITH(", 'url': 11434"),
     "c.json: agents.main_agent.url: expected a non-empty string, got 11434"},
    {"model missing", "{'agents': {'main_agent': {'role': 'main'}}}",
     "c.json: agents.main_agent.model: missing (required)"},
    {"model null", "{'agents': {'main_agent': {'role': 'main', 'model': null}}}",
     "c.json: agents.main_agent.model: missing (required)"},
    {"model not a string", "{'agents': {'main_agent': {'role': 'main', 'model': true}}}",
     "c.json: agents.main_agent.model: expected a non-empty string, got true"},
    {"api_key not a string", MAIN_WITH(", 'api_key': 12345"),
     "c.json: agents.main_agent.api_key: expected a string or null, got a number"},
    {"role missing", "{'agents': {'main_agent': {'model': 'm'}}}",
     "c.json: agents.main_agent.role: missing (required)"},
    {"role uppercase", "{'agents': {'main_agent': {'model': 'm', 'role': 'Main'}}}",
     "c.json: agents.main_agent.role: expected lowercase letters, digits, '_' or '-'"},
    {"role with space", "{'agents': {'main_agent': {'model': 'm', 'role': 'code review'}}}",
     "c.json: agents.main_agent.role: expected lowercase letters"},
    {"control characters are not echoed", MAIN_WITH(", 'url': 'http://a\\nb'"),
     "c.json: agents.main_agent.url: expected an http:// or https:// URL, got \"http://a?b\""},
    {"role not a string", "{'agents': {'main_agent': {'model': 'm', 'role': ['main']}}}",
     "c.json: agents.main_agent.role: expected a non-empty string, got an array"},
    {"temperature a word", MAIN_WITH(", 'temperature': 'hot'"),
     "c.json: agents.main_agent.temperature: expected a number between 0 and 2, got \"hot\""},
    {"temperature too high", MAIN_WITH(", 'temperature': 2.5"),
     "c.json: agents.main_agent.temperature: expected a number between 0 and 2, got 2.5"},
    {"temperature negative", MAIN_WITH(", 'temperature': -0.1"),
     "c.json: agents.main_agent.temperature: expected a number between 0 and 2, got -0.1"},
    {"context_tokens too small", MAIN_WITH(", 'context_tokens': 100"),
     "c.json: agents.main_agent.context_tokens: expected an integer from 256 to 10000000, got 100"},
    {"turn_timeout_s zero", MAIN_WITH(", 'turn_timeout_s': 0"),
     "c.json: agents.main_agent.turn_timeout_s: expected an integer from 1 to 86400, got 0"},
    {"context_tokens a string", MAIN_WITH(", 'context_tokens': '8k'"),
     "c.json: agents.main_agent.context_tokens: expected an integer from 256 to 10000000, got \"8k\""},
    {"max_tokens zero", MAIN_WITH(", 'max_tokens': 0"),
     "c.json: agents.main_agent.max_tokens: expected an integer from 1 to 10000000, got 0"},
    {"max_tokens real", MAIN_WITH(", 'max_tokens': 1.5"),
     "c.json: agents.main_agent.max_tokens: expected an integer from 1 to 10000000, got 1.5"},
    {"max_tokens string", MAIN_WITH(", 'max_tokens': '2048'"),
     "c.json: agents.main_agent.max_tokens: expected an integer from 1 to 10000000, got \"2048\""},
    {"max_tokens huge", MAIN_WITH(", 'max_tokens': 99999999999"),
     "c.json: agents.main_agent.max_tokens: expected an integer from 1 to 10000000, got 99999999999"},
    {"stream a string", MAIN_WITH(", 'stream': 'yes'"),
     "c.json: agents.main_agent.stream: expected true or false, got \"yes\""},
    {"stream a number", MAIN_WITH(", 'stream': 1"), "c.json: agents.main_agent.stream: expected true or false, got 1"},
    {"summarize_context a string", MAIN_WITH(", 'summarize_context': 'no'"),
     "c.json: agents.main_agent.summarize_context: expected true or false, got \"no\""},
    {"cost negative", MAIN_WITH(", 'cost_per_1m_input': -1"),
     "c.json: agents.main_agent.cost_per_1m_input: expected a number of 0 or more (USD), got -1"},
    {"cost a string", MAIN_WITH(", 'cost_per_1m_output': '$2'"),
     "c.json: agents.main_agent.cost_per_1m_output: expected a number of 0 or more (USD), got \"$2\""},
    {"prompt file missing", MAIN_WITH(", 'system_prompt_file': 'nope.txt'"),
     "c.json: agents.main_agent.system_prompt_file: prompt file \"nope.txt\" not found in "},
    {"prompt file absolute missing", MAIN_WITH(", 'system_prompt_file': '/nonexistent/p.txt'"),
     "c.json: agents.main_agent.system_prompt_file: prompt file \"/nonexistent/p.txt\" not found"},
    {"prompt file not a string", MAIN_WITH(", 'system_prompt_file': {}"),
     "c.json: agents.main_agent.system_prompt_file: expected a non-empty string, got an object"},
    {"trailing garbage", MAIN_WITH("") "x", "c.json:1:"},
    {"spawning_rules a string", "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'spawning_rules': 'x'}",
     "c.json: spawning_rules: expected an object, got \"x\""},
    {"keyword names missing profile",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'spawning_rules': {'keywords': {'review': 'nope'}}}",
     "c.json: spawning_rules.keywords.review: names profile \"nope\", which is not in agents"},
    {"keyword value not a string",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'spawning_rules': {'keywords': {'review': 1}}}",
     "c.json: spawning_rules.keywords.review: expected a profile name, got 1"},
    {"keywords an array", "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'spawning_rules': {'keywords': ['m']}}",
     "c.json: spawning_rules.keywords: expected an object mapping words to profile names, got an array"},
    {"empty keyword", "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'spawning_rules': {'keywords': {'': 'm'}}}",
     "c.json: spawning_rules.keywords.: a keyword must not be empty"},
    {"auto_spawn not a bool",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'spawning_rules': {'auto_spawn_on_keywords': 'no'}}",
     "c.json: spawning_rules.auto_spawn_on_keywords: expected true or false, got \"no\""},
    {"require_confirmation not a bool",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'spawning_rules': {'require_confirmation': 0}}",
     "c.json: spawning_rules.require_confirmation: expected true or false, got 0"},
    {"max_concurrent_agents zero", "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'max_concurrent_agents': 0}",
     "c.json: max_concurrent_agents: expected an integer from 1 to 1024, got 0"},
    {"max_concurrent_agents string",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}}, 'max_concurrent_agents': 'five'}",
     "c.json: max_concurrent_agents: expected an integer from 1 to 1024, got \"five\""},
};

static void expect_error(fx_t *fx, const char *path, const char *name, const char *want) {
  cadre_config_t *c = config_load(path, SRC_PROMPTS, fx->err, sizeof fx->err);
  if (c) {
    config_destroy(&c);
    fail_msg("case \"%s\": loaded, expected error containing: %s", name, want);
  }
  if (!strstr(fx->err, want))
    fail_msg("case \"%s\":\n  got:  %s\n  want: ...%s...", name, fx->err, want);
  if (strncmp(fx->err, path, strlen(path)) != 0)
    fail_msg("case \"%s\": error does not start with the file name: %s", name, fx->err);
}

static void test_error_table(void **state) {
  fx_t *fx = *state;
  for (size_t i = 0; i < sizeof ERR_CASES / sizeof ERR_CASES[0]; i++) {
    char path[PATH_MAX];
    put_json(fx, "c.json", ERR_CASES[i].json, path, sizeof path);
    expect_error(fx, path, ERR_CASES[i].name, ERR_CASES[i].want);
  }
}

static void test_error_missing_file(void **state) {
  fx_t *fx = *state;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/x.json", fx->dir);
  expect_error(fx, path, "missing file", "x.json: cannot read: No such file or directory");
  expect_error(fx, fx->dir, "a directory", ": cannot read: Is a directory");
}

static void test_error_file_too_large(void **state) {
  fx_t *fx = *state;
  size_t n = 1024 * 1024 + 10;
  char *big = malloc(n + 1);
  assert_non_null(big);
  memset(big, ' ', n);
  big[0] = '{';
  big[n - 1] = '}';
  big[n] = '\0';
  char path[PATH_MAX];
  put(fx, "big.json", big, false, path, sizeof path);
  free(big);
  expect_error(fx, path, "big config", "big.json: file is larger than 1 MiB");
}

static void test_error_prompt_too_large_or_binary(void **state) {
  fx_t *fx = *state;
  char path[PATH_MAX], p[PATH_MAX];
  char *big = malloc(300 * 1024 + 1);
  assert_non_null(big);
  memset(big, 'a', 300 * 1024);
  big[300 * 1024] = '\0';
  put(fx, "big.txt", big, false, p, sizeof p);
  free(big);
  put_json(fx, "c.json", MAIN_WITH(", 'system_prompt_file': 'big.txt'"), path, sizeof path);
  expect_error(fx, path, "big prompt", "c.json: agents.main_agent.system_prompt_file: prompt file \"");
  assert_non_null(strstr(fx->err, "big.txt\" is larger than 256 KiB"));
  put(fx, "bin.txt", "caf\xe9 \xff\xfe", false, p, sizeof p);
  put_json(fx, "c.json", MAIN_WITH(", 'system_prompt_file': 'bin.txt'"), path, sizeof path);
  expect_error(fx, path, "binary prompt", "bin.txt\" is not UTF-8 text");
}

/* ---- the network switch -------------------------------------------------- */

static const struct {
  const char *name, *json; /* ' stands for " */
  bool main_net, tester_net;
  size_t tester_tools; /* how many tools the tester's policy names */
} NET_CASES[] = {
    {"off by default", "{'agents': {'m': {'role': 'main', 'model': 'm'}, 't': {'role': 'tester', 'model': 'm'}}}",
     false, false, 6},
    {"a role's policy turns it on",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}, 't': {'role': 'tester', 'model': 'm'}},"
     " 'tools': {'policy': {'tester': {'tools': ['execute_bash'], 'network': true}}}}",
     false, true, 1},
    {"a profile's own switch wins over its role's",
     "{'agents': {'m': {'role': 'main', 'model': 'm', 'network': true}, 't': {'role': 'tester', 'model': 'm',"
     " 'network': false}}, 'tools': {'policy': {'tester': {'tools': ['*'], 'network': true}}}}",
     true, false, 6},
    {"the '*' policy covers roles without their own",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}, 't': {'role': 'tester', 'model': 'm'}},"
     " 'tools': {'policy': {'*': {'tools': ['read_file'], 'network': true}, 'main': ['read_file']}}}",
     false, false, 6},
    {"a list policy keeps the network off",
     "{'agents': {'m': {'role': 'main', 'model': 'm'}, 't': {'role': 'tester', 'model': 'm'}},"
     " 'tools': {'policy': {'tester': ['grep']}}}",
     false, false, 1},
};

static void test_network_switch(void **state) {
  fx_t *fx = *state;
  for (size_t i = 0; i < sizeof NET_CASES / sizeof NET_CASES[0]; i++) {
    char path[PATH_MAX];
    put_json(fx, "c.json", NET_CASES[i].json, path, sizeof path);
    cadre_config_t *c = config_load(path, NULL, fx->err, sizeof fx->err);
    if (!c)
      fail_msg("case \"%s\": %s", NET_CASES[i].name, fx->err);
    const cadre_profile_t *m = config_profile(c, "m"), *t = config_profile(c, "t");
    if (m->network != NET_CASES[i].main_net || t->network != NET_CASES[i].tester_net)
      fail_msg("case \"%s\": main %d tester %d", NET_CASES[i].name, m->network, t->network);
    json_t *tools = config_tools_for(c, t);
    assert_int_equal(json_array_size(tools), NET_CASES[i].tester_tools);
    json_decref(tools);
    config_destroy(&c);
  }
}

/* ---- views ------------------------------------------------------------- */

static void test_wire_profile_has_no_secrets(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = load_full(fx);
  json_t *w = config_profile_wire(config_main(c));
  assert_non_null(w);
  const char *want[] = {"name", "provider", "url", "model", "role", "temperature", "max_tokens", "stream"};
  for (size_t i = 0; i < 8; i++)
    assert_non_null(json_object_get(w, want[i]));
  assert_string_equal(json_string_value(json_object_get(w, "model")), "gpt-4o");
  assert_int_equal(json_integer_value(json_object_get(w, "max_tokens")), 8000);
  assert_true(json_is_false(json_object_get(w, "stream")));
  assert_null(json_object_get(w, "api_key"));
  assert_null(json_object_get(w, "system_prompt"));
  assert_null(json_object_get(w, "system_prompt_file"));
  char *dump = json_dumps(w, 0);
  assert_null(strstr(dump, "SECRET"));
  assert_null(strstr(dump, "boss."));
  free(dump);
  json_decref(w);
  assert_null(config_profile_wire(NULL));
  config_destroy(&c);
}

/* MCP servers: both kinds read, profiles name them, a role's policy narrows
 * them for its profiles only, env values never shown. */
static void test_mcp_servers(void **state) {
  fx_t *fx = *state;
  char path[PATH_MAX];
  put_json(
      fx, "mcp.json",
      "{'mcp_servers': {'fs': {'command': 'node', 'args': ['srv.js', '/ws'], 'env': {'FS_TOKEN': 'tok-123456789'}},"
      " 'web': {'url': 'http://127.0.0.1:3001/mcp', 'timeout_s': 9}},"
      " 'agents': {'m': {'role': 'main', 'model': 'm', 'mcp_servers': ['fs', 'web']},"
      "            't': {'role': 'tester', 'model': 'm', 'mcp_servers': ['web']},"
      "            'r': {'role': 'reviewer', 'model': 'm'}},"
      " 'tools': {'policy': {'tester': {'tools': ['read_file', 'web__echo', 'fs__*']}}}}",
      path, sizeof path);
  cadre_config_t *c = config_load(path, NULL, fx->err, sizeof fx->err);
  assert_non_null(c);
  assert_int_equal(c->n_mcp_servers, 2);
  const cadre_mcp_server_t *fs = config_mcp_server(c, "fs"), *web = config_mcp_server(c, "web");
  assert_string_equal(fs->command, "node");
  assert_string_equal(fs->args[1], "/ws");
  assert_null(fs->args[2]);
  assert_string_equal(fs->env[0], "FS_TOKEN=tok-123456789");
  assert_string_equal(web->url, "http://127.0.0.1:3001/mcp");
  assert_int_equal(web->timeout_s, 9);
  assert_null(config_mcp_server(c, "nope"));
  const cadre_profile_t *m = config_profile(c, "m"), *t = config_profile(c, "t"), *r = config_profile(c, "r");
  assert_int_equal(json_array_size(m->mcp_servers), 2);
  assert_null(m->mcp_tools); /* the main role's policy names none: all */
  assert_int_equal(json_array_size(t->mcp_tools), 2);
  assert_string_equal(json_string_value(json_array_get(t->mcp_tools, 0)), "web__echo");
  json_t *tt = config_tools_for(c, t); /* the node tools stay node tools */
  assert_int_equal(json_array_size(tt), 1);
  json_decref(tt);
  assert_null(r->mcp_servers);
  json_t *j = config_to_json(c);
  char *dump = json_dumps(j, 0);
  assert_null(strstr(dump, "tok-123456789"));
  assert_non_null(strstr(dump, "FS_TOKEN"));
  free(dump);
  json_decref(j);
  config_destroy(&c);
  /* The example (npx runs the servers from the npm registry). */
  snprintf(path, sizeof path, "%s/examples/config-mcp.json", CADRE_SOURCE_ROOT);
  c = config_load(path, SRC_PROMPTS, fx->err, sizeof fx->err);
  if (!c)
    fail_msg("%s", fx->err);
  assert_int_equal(c->n_mcp_servers, 2);
  assert_int_equal(json_array_size(config_profile(c, "researcher_agent")->mcp_tools), 4);
  assert_null(config_profile(c, "main_agent")->mcp_tools);
  config_destroy(&c);
}

static void test_to_json_masks_keys(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = load_full(fx);
  json_t *j = config_to_json(c);
  assert_non_null(j);
  json_t *agents = json_object_get(j, "agents");
  assert_int_equal(json_object_size(agents), 4);
  json_t *boss = json_object_get(agents, "boss");
  assert_string_equal(json_string_value(json_object_get(boss, "api_key")), "***");
  assert_string_equal(json_string_value(json_object_get(boss, "system_prompt_file")), "mine/boss.txt");
  assert_true(json_is_null(json_object_get(json_object_get(agents, "rev"), "api_key")));
  json_t *sr = json_object_get(j, "spawning_rules");
  assert_string_equal(json_string_value(json_object_get(json_object_get(sr, "keywords"), "audit")), "sec");
  assert_true(json_is_true(json_object_get(sr, "auto_spawn_on_keywords")));
  assert_int_equal(json_integer_value(json_object_get(j, "max_concurrent_agents")), 3);
  assert_non_null(strstr(json_string_value(json_object_get(j, "path")), "full.json"));
  char *dump = json_dumps(j, 0);
  assert_null(strstr(dump, "SECRET"));
  assert_null(strstr(dump, "You are the boss"));
  free(dump);
  json_decref(j);
  config_destroy(&c);
}

static void test_to_json_of_defaults(void **state) {
  fx_t *fx = *state;
  cadre_config_t *c = config_load(NULL, SRC_PROMPTS, fx->err, sizeof fx->err);
  json_t *j = config_to_json(c);
  assert_non_null(j);
  assert_true(json_is_null(json_object_get(j, "path")));
  assert_int_equal(json_object_size(json_object_get(j, "agents")), 6);
  json_decref(j);
  config_destroy(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_defaults_have_the_seed_team),
      T(test_defaults_spawning_rules),
      T(test_defaults_without_prompts_have_no_prompt),
      T(test_full_file_fields),
      T(test_full_file_defaults_per_field),
      T(test_full_file_spawning_rules),
      T(test_minimal_file_uses_defaults),
      T(test_prompt_beside_config_file),
      T(test_prompt_falls_back_to_prompts_dir),
      T(test_prompt_absolute_path_and_prompts_dir_env),
      T(test_find_prompts_dir),
      T(test_example_configs_load),
      T(test_error_table),
      T(test_network_switch),
      T(test_error_missing_file),
      T(test_error_file_too_large),
      T(test_error_prompt_too_large_or_binary),
      T(test_wire_profile_has_no_secrets),
      T(test_mcp_servers),
      T(test_to_json_masks_keys),
      T(test_to_json_of_defaults),
#undef T
  };
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
