/* config: Cadre's JSON configuration (the seed's agent_config_multi_agent.json shape).
 *
 *   {
 *     "agents": { "<profile name>": { provider, url, model, api_key, role,
 *                 temperature, max_tokens, stream, system_prompt_file,
 *                 cost_per_1m_input, cost_per_1m_output, tokens_per_second }, ... },
 *     "spawning_rules": { "keywords": { "<word>": "<profile name>" },
 *                         "auto_spawn_on_keywords": bool, "require_confirmation": bool },
 *     "max_concurrent_agents": int,
 *     "mcp_servers": { "<server>": { "command": "...", "args": [...], "env": {...} }   (stdio)
 *                    | { "url": "http://..." }                                     (streamable HTTP)
 *                    , optional "timeout_s" }
 *   }
 * A profile's "mcp_servers": ["<server>", ...] names the servers whose tools
 * its agent gets (as "<server>__<tool>"); its tool policy may narrow them by
 * those names ("<server>__<tool>" or "<server>__*").
 *
 * The profile whose role is "main" is the main agent. With no file, built-in
 * defaults: the seed's models on a local Ollama.
 */
#ifndef CADRE_CONFIG_H
#define CADRE_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The coding tools agent daemons run (agentd/tools.c implements them). */
#define CADRE_NODE_TOOLS(X) X(execute_bash) X(read_file) X(write_file_tool) X(edit_file) X(list_files) X(grep)

typedef struct {
  char *name;     /* profile name, e.g. "reviewer_agent" */
  char *provider; /* "ollama", "lm_studio", "openai", "vllm", "llamacpp", ... */
  char *url;      /* base URL, e.g. http://localhost:11434/v1 */
  char *model;
  char *api_key; /* NULL when not in the file; never logged or sent */
  char *role;    /* "main", "reviewer", ... */
  double temperature;
  int max_tokens;
  int context_tokens;     /* the model's context in tokens; 0: unknown (the node asks the server) */
  int turn_timeout_s;     /* the deadline of each model call; 0: the node's --turn-timeout */
  bool summarize_context; /* past the context, older turns are summarised by the model (default) or only left out */
  bool stream;
  bool compact;              /* always the short prompt and tool definitions (else: below 6,144 tokens of context) */
  char *system_prompt_file;  /* as written in the file (NULL when absent) */
  char *system_prompt_path;  /* the file actually read (resolved); NULL when none */
  char *system_prompt;       /* the file's text, loaded; NULL when no file */
  char *system_prompt_short; /* for a small context: <prompt>.short.txt beside the file, else (roles
                                other than main) the built-in one; NULL: system_prompt serves */
  double cost_per_1m_input;  /* USD */
  double cost_per_1m_output;
  double tokens_per_second; /* the model's answer speed, for plan estimates; 0: unknown */
  json_t *tools;            /* the profile's own "tools" list (names), or NULL: the role policy */
  char *max_tokens_field;   /* "max_tokens" or "max_completion_tokens"; NULL: by provider and model */
  json_t *think;            /* Ollama's think option (bool or string), or NULL: not sent */
  json_t *labels;           /* node labels its turns need ({"gpu": "1"}), or NULL: any node */
  /* execute_bash keeps the host's network: the profile's own "network", else
   * its role's tool policy's (tools.policy.ROLE {"tools": [...], "network":
   * true}), else false (the sandbox has no network). */
  bool network;
  bool network_given; /* the profile said it itself */
  /* MCP: the servers (names in cadre_config_t.mcp_servers) whose tools the
   * agent gets, or NULL: none; mcp_tools: the MCP entries of its tool list
   * (its own "tools", else its role's policy: "<server>__<tool>" or
   * "<server>__*"), or NULL: every tool of those servers. A server no entry
   * names keeps all its tools. */
  json_t *mcp_servers;
  json_t *mcp_tools;
} cadre_profile_t;

/* An MCP server (config "mcp_servers"): a command run over stdio, or a
 * streamable HTTP url. */
typedef struct {
  char *name;
  char *command; /* stdio: the program (NULL for url) */
  char **args;   /* NULL-terminated, never NULL */
  char **env;    /* "NAME=value" added to the server's environment; NULL-terminated; values never logged */
  char *url;     /* streamable HTTP endpoint (NULL for command) */
  int timeout_s; /* each request; 0: tools.timeout_s */
} cadre_mcp_server_t;

/* "tools": how agents use the node tools. */
typedef struct {
  json_t *policy;                 /* role -> array of tool names; "*": any other role */
  json_t *network;                /* role -> true: its commands keep the network (policy {"network": true}) */
  json_t *mcp_policy;             /* role -> its MCP tool entries ("<server>__<tool>"), when it names any */
  char approval[16];              /* "never", "mutating" (default: writes and commands ask), "always" */
  int timeout_s;                  /* execute_bash default timeout (120) */
  int max_iterations;             /* model calls in one turn (25) */
  int max_tool_calls;             /* tool calls in one turn (100) */
  long long max_tokens_per_agent; /* an agent's total tokens; 0: no cap */
} cadre_tools_config_t;

typedef struct {
  char *keyword;
  char *profile;
} cadre_keyword_rule_t;

typedef struct {
  char *path; /* file read, or NULL for built-in defaults */
  cadre_profile_t *profiles;
  size_t n_profiles;
  cadre_keyword_rule_t *keywords;
  size_t n_keywords;
  bool auto_spawn_on_keywords;
  bool require_confirmation;
  int max_concurrent_agents; /* default 5 */
  /* What a spawned sub-agent sees of its parent's conversation:
   * spawning_rules.context "full" (default), "none" or "last:N" -> -1, 0 or N. */
  int spawn_context;
  /* spawning_rules.delegation (default true): the main agent may spawn
   * sub-agents itself through the spawn_agent tool; agents at depth
   * max_depth or deeper (spawning_rules.max_depth, default 1: only the main
   * agent, at depth 0) do not get the tool. */
  bool delegation;
  int max_spawn_depth;
  cadre_tools_config_t tools;
  json_t *budgets; /* {"role": {"tokens": N, "cost": USD}} (config "budgets"), or NULL */
  cadre_mcp_server_t *mcp_servers;
  size_t n_mcp_servers;
} cadre_config_t;

/* Loads path (NULL: built-in defaults). A relative system_prompt_file is looked
 * up beside the config file, then in prompts_dir (NULL: skipped), then in
 * config_find_prompts_dir(); in the last two also by its base name, so the
 * seed's "prompts/reviewer_prompt.txt" works from anywhere. A profile with no
 * system_prompt_file gets <role>_prompt.txt from those two directories when it
 * exists (else no prompt). Unknown keys are ignored (forward compatible).
 * Files are capped (config 1 MiB, prompt 256 KiB). On error returns NULL and
 * writes into err a message naming the file, the key (e.g.
 * agents.reviewer_agent.temperature) and what is wrong. Caller owns the result. */
cadre_config_t *config_load(const char *path, const char *prompts_dir, char *err, size_t errlen);
void config_destroy(cadre_config_t **self_p);

/* Profile by name, or NULL. */
const cadre_profile_t *config_profile(const cadre_config_t *self, const char *name);
/* First profile with this role, or NULL. */
const cadre_profile_t *config_profile_for_role(const cadre_config_t *self, const char *role);
/* The main agent's profile (role "main"); never NULL for a loaded config. */
const cadre_profile_t *config_main(const cadre_config_t *self);
/* The MCP server of that name, or NULL. */
const cadre_mcp_server_t *config_mcp_server(const cadre_config_t *self, const char *name);

/* Names of the node tools a profile may use (its own list, else its role's
 * policy, else the "*" policy). Caller owns. */
json_t *config_tools_for(const cadre_config_t *self, const cadre_profile_t *p);

/* The profile as sent to a node: every field but api_key and the prompt
 * (name, provider, url, model, role, temperature, max_tokens, stream). Caller owns. */
json_t *config_profile_wire(const cadre_profile_t *p);
/* The whole config as JSON for display, api keys replaced by "***" when set. Caller owns. */
json_t *config_to_json(const cadre_config_t *self);

/* Writes into buf the directory that holds the built-in prompts (main_prompt.txt, ...):
 * the first existing of $CADRE_PROMPTS_DIR, CADRE_DATADIR/prompts,
 * <exe dir>/../share/cadre/prompts, CADRE_SOURCE_ROOT/prompts. Returns 0,
 * -ENOENT when none exists, or -ENAMETOOLONG when the first that exists does
 * not fit in len (buf then holds ""). */
int config_find_prompts_dir(char *buf, size_t len);

/* A node label's key or value: 1 to 63 of letters, digits, '.', '_', '-', '/'. */
bool config_label_ok(const char *s);

#endif
