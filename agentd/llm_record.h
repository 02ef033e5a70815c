/* llm_record: record and replay of model exchanges (cadre-agentd --record DIR,
 * --replay DIR).
 *
 * Recording writes each exchange that got an answer to DIR/<key>-<n>.json:
 * the request body as sent (API keys travel in headers, never in it), the
 * URL as shown, the status, the Content-Type and the raw response body
 * (base64), byte for byte. <key> is the SHA-256 of the request body, <n>
 * counts the same request asked again (1, 2, ...).
 *
 * Replaying answers a request from DIR instead of calling the server: the
 * n-th time a request comes, its n-th recording (the last one again once
 * they run out), played through the same parser and callbacks as a live
 * answer, so a session or a workflow reruns offline and exactly as it went.
 * A request with no recording fails with a clear error (replay_missing).
 */
#ifndef CADRE_LLM_RECORD_H
#define CADRE_LLM_RECORD_H

#include <stdbool.h>
#include <stddef.h>

#include "llm_http.h"

/* Process-wide, once, before any call: either directory may be NULL. */
int llm_record_setup(const char *record_dir, const char *replay_dir, char *err, size_t errlen);
bool llm_recording(void);
bool llm_replaying(void);
/* The key of a request body (lowercase hex SHA-256). */
void llm_record_key(const char *request, char key[65]);
/* Writes t's exchange (t->tee holds the body). 0, or a negative errno. */
int llm_record_save(const char *request, const char *url, const llm_try_t *t);
/* Plays the recording of request into t. 0, or -ENOENT / -EINVAL with err. */
int llm_replay_play(const char *request, llm_try_t *t, char *err, size_t errlen);

#endif
