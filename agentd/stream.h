/* stream: parsers for model server responses.
 *
 * One parser object reads one HTTP response body, fed in pieces of any size
 * (split anywhere, even inside a UTF-8 sequence or a CRLF), and produces:
 *   - callbacks as answer text and thinking text arrive (for streaming to the user),
 *   - a result at the end: full text, thinking, tool calls, finish reason, usage, error.
 *
 * Formats:
 *   LLM_FORMAT_OPENAI_SSE    OpenAI chat completions with stream:true (text/event-stream);
 *                            a body starting with '{' is read as LLM_FORMAT_OPENAI_JSON
 *                            (a server that ignored stream:true, or a JSON error body)
 *   LLM_FORMAT_OPENAI_JSON   OpenAI chat completions with stream:false (one JSON object)
 *   LLM_FORMAT_OLLAMA_NDJSON Ollama native /api/chat (one JSON object per line; also
 *                            accepts a single object, i.e. stream:false)
 *
 * Thinking is taken from delta.reasoning, delta.reasoning_content, Mistral's
 * content parts of type "thinking", Ollama's message.thinking, and inline
 * <think>...</think> in the answer text (tags may be split across deltas).
 */
#ifndef CADRE_STREAM_H
#define CADRE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LLM_FORMAT_OPENAI_SSE, LLM_FORMAT_OPENAI_JSON, LLM_FORMAT_OLLAMA_NDJSON } llm_format_t;

/* Caps on what a (possibly hostile) server can make us hold. */
#define LLM_MAX_LINE (4 * 1024 * 1024)  /* one SSE line / NDJSON line / whole JSON body */
#define LLM_MAX_TEXT (32 * 1024 * 1024) /* accumulated text + thinking + arguments */
#define LLM_MAX_TOOL_CALLS 64
#define LLM_MAX_CHOICES 8

typedef struct {
  int index; /* the server's index (or position when it sent none) */
  char *id;  /* "" when the server sent none */
  char *name;
  char *arguments; /* always a JSON text (objects from Ollama are serialised) */
} llm_tool_call_t;

typedef struct {
  char *text;     /* answer of choice 0 (thinking removed); never NULL after finish */
  char *thinking; /* never NULL after finish ("" when none) */
  char *refusal;  /* delta.refusal text, NULL when none */
  llm_tool_call_t *tool_calls;
  size_t n_tool_calls;
  char *finish_reason; /* NULL when the server never said */
  bool has_usage;
  int64_t prompt_tokens, completion_tokens, total_tokens;
  bool done;        /* saw [DONE], done:true, object "chat.completion.done", or a
                            whole JSON body with "choices" */
  bool has_error;   /* the server reported an error in the body */
  char *error_code; /* e.g. "tool_use_failed", "400"; may be NULL */
  char *error_message;
  size_t n_choices;                   /* distinct choice indexes seen (n>1) */
  char *choice_text[LLM_MAX_CHOICES]; /* text per choice index (NULL when unseen);
                                         choice_text[0] is the same pointer as `text` */
} llm_result_t;

typedef struct {
  /* Answer text as it arrives (choice 0 only, thinking removed). */
  void (*on_text)(void *ud, const char *s, size_t n);
  /* Thinking text as it arrives. */
  void (*on_thinking)(void *ud, const char *s, size_t n);
} llm_stream_cb_t;

typedef struct llm_stream llm_stream_t;

/* New parser. cb may be NULL (result only). Returns NULL on allocation failure. */
llm_stream_t *llm_stream_new(llm_format_t format, const llm_stream_cb_t *cb, void *ud);
void llm_stream_destroy(llm_stream_t **self_p);

/* Feeds the next piece of the body. Returns 0, or a negative errno when a cap
 * is exceeded (-E2BIG) or memory runs out; the parser then stays failed. A
 * chunk that is not valid JSON is an error of the stream (result.has_error). */
int llm_stream_feed(llm_stream_t *self, const char *data, size_t len);
/* End of body: dispatches a last event that had no blank line after it (or a
 * last NDJSON line without LF). When that last piece is cut off mid-JSON it is
 * dropped, not an error: done stays false and the caller sees a cut stream. */
int llm_stream_finish(llm_stream_t *self);
/* What the stream has delivered so far, as a number that grows only with
 * answer, thinking or refusal text, tool call pieces, a finish reason, usage,
 * an error or the end marker: keep-alive comments (": ping"), empty events and
 * empty deltas leave it as it was. The stall timer counts from its last change. */
uint64_t llm_stream_progress(const llm_stream_t *self);
/* The result so far (complete after finish). Owned by the parser. */
const llm_result_t *llm_stream_result(const llm_stream_t *self);
/* Moves the result out (caller frees with llm_result_free); the parser keeps an empty one. */
void llm_stream_take_result(llm_stream_t *self, llm_result_t *out);
void llm_result_free(llm_result_t *r);

/* ---- SSE tokenizer (exposed for tests) --------------------------------- */
typedef struct sse_parser sse_parser_t;
/* Called once per event: name is "" for unnamed events, data is the joined data lines. */
typedef int (*sse_event_fn)(void *ud, const char *event, const char *data, size_t datalen);
sse_parser_t *sse_parser_new(sse_event_fn fn, void *ud, size_t max_line);
void sse_parser_destroy(sse_parser_t **self_p);
/* Returns 0, the callback's non-zero result, or -E2BIG on a line over max_line. */
int sse_parser_feed(sse_parser_t *self, const char *data, size_t len);
int sse_parser_finish(sse_parser_t *self);

#endif
