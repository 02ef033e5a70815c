/* secrets: API keys for agentd's model calls.
 *
 * The file is the seed's secrets.json, a flat JSON object:
 *   {"ollama_api_key": "...", "lm_studio_api_key": null, "openai_api_key": "..."}
 * Any member named "<provider>_api_key" is a key for that provider; null and
 * "" mean "none". Other members are ignored; a value that is neither a string
 * nor null is an error.
 *
 * secrets_key_for() picks, in order:
 *   1. the profile's own api_key, when non-empty;
 *   2. the file's "<provider>_api_key";
 *   3. the environment's <PROVIDER>_API_KEY.
 * The provider name is lowercased and '-', '.', ' ' become '_' (so "lm-studio"
 * and "LM Studio" read lm_studio_api_key / LM_STUDIO_API_KEY); "lmstudio" is
 * taken as "lm_studio". There is no fallback across providers: a profile of
 * provider "vllm" gets vllm_api_key / VLLM_API_KEY, never the OpenAI key, so
 * a key is only ever sent to the kind of server it was issued for (vLLM and
 * llama.cpp servers read VLLM_API_KEY / LLAMA_API_KEY themselves; put the
 * key in the profile or the file under the provider's name).
 *
 * Permissions: a file that group or others may read still loads, and
 * secrets_warning() then says so (the caller logs it). Keys are wiped from
 * memory by secrets_destroy (explicit_bzero).
 */
#ifndef CADRE_SECRETS_H
#define CADRE_SECRETS_H

#include <stddef.h>

typedef struct secrets secrets_t;

/* Loads path (NULL: an empty set, so only profiles and the environment
 * count). On failure returns NULL and writes into err a message naming the
 * file (and the line and column for malformed JSON, the key for a bad
 * value); errno is ENOENT when the file does not exist, so a caller may treat
 * a missing optional file as empty. */
secrets_t *secrets_load(const char *path, char *err, size_t errlen);

/* A warning about the file (e.g. readable by group/others), or NULL. */
const char *secrets_warning(const secrets_t *self);

/* The key to use for a profile, or NULL when there is none. self may be NULL
 * (profile and environment only). The pointer is borrowed: from
 * profile_api_key, from self (valid until secrets_destroy) or from the
 * environment (valid until the variable changes). Never log it. */
const char *secrets_key_for(const secrets_t *self, const char *provider, const char *profile_api_key);

/* Number of keys loaded from the file (for a startup log line). */
size_t secrets_count(const secrets_t *self);

/* The i-th key loaded from the file (i < secrets_count), or NULL: for the
 * agent daemon's scrubbing of tool output. Borrowed; never log it. */
const char *secrets_value(const secrets_t *self, size_t i);

/* Wipes the keys and frees; sets *self_p to NULL. */
void secrets_destroy(secrets_t **self_p);

#endif
