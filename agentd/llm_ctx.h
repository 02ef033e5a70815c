/* llm_ctx: how many tokens a model's context holds, asked of its server once
 * per URL and model (llama.cpp GET /props, Ollama POST /api/show), else a safe
 * default. */
#ifndef CADRE_LLM_CTX_H
#define CADRE_LLM_CTX_H

#include <jansson.h>
#include <stdbool.h>

#define LLM_CTX_DEFAULT 8192

/* The context size of the profile's model: the profile's context_tokens when
 * set, else what its server says (asked once per URL and model, remembered;
 * thread-safe), else LLM_CTX_DEFAULT. *from_server (may be NULL) tells whether the
 * server answered. */
int llm_context_tokens(const json_t *profile, const char *api_key, long timeout_ms, bool *from_server);

/* The context size in a llama.cpp /props body or an Ollama /api/show body; 0 when none. */
int llm_ctx_parse(const json_t *body);

/* Forgets what the profile's server said (it is asked again next time), or,
 * with NULL, what every server said. */
void llm_ctx_forget(const json_t *profile);

#endif
