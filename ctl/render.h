/* render: how a turn's stream reads as text, the one renderer behind every
 * place that shows one: the console and cadre watch (view.c: each agent's
 * prefixed lines on an out_t) and cadre ask / chat (cmd_ask.c: the bare
 * answer on stdout). Tool calls, the end of a turn and the thinking mark are
 * written here only.
 */
#ifndef CADRE_RENDER_H
#define CADRE_RENDER_H

#include <jansson.h>
#include <stdbool.h>

#include "output.h"
#include "proto.h"
#include "sbuf.h"

/* What starts thinking text: dimmed with colours, else the words "[thinking] ". */
const char *render_thinking_mark(bool color);
/* The call or result a tool_call / tool_result delta carries ({id, name,
 * arguments} or {id, name, ok, summary, preview}): its call map, or from an
 * older node its text parsed; caller owns it (NULL: none). The one place that
 * reads a tool delta's body. */
json_t *render_tool_body(const proto_msg_t *m);
/* A tool_call or tool_result delta, "→ name args" or "← ✓ name summary" and
 * a few lines of the output's preview (nothing for other kinds); its style: OUT_ERROR for a failed
 * result, else OUT_DIM. */
out_style_t render_tool_delta(sbuf_t *b, const proto_msg_t *m);
/* A tool call, {id, name, arguments} or OpenAI's {id, function: {name, arguments}}: "name args" on one line. */
void render_call(sbuf_t *b, const json_t *call);
/* A tool_call event {name, arguments}: "→ spawn_agent reviewer: task", or "→ name args". */
void render_call_event(sbuf_t *b, const json_t *p);
/* The end of a turn (a turn_done payload) that took seconds:
 * "7 tokens in, 3 out · 1.20 s · model on node" and what was odd about it. */
void render_turn_end(sbuf_t *b, const json_t *done, double seconds);
/* A failed turn (a turn_failed payload): "cancelled (detail)" (OUT_DIM) or "failed: detail (code)" (OUT_ERROR). */
out_style_t render_turn_failed(sbuf_t *b, const json_t *failed);
/* A new attempt of a turn: "attempt 2 on another node: the answer starts again". */
void render_attempt(sbuf_t *b, long long attempt);
/* Lines of a tool's output shown with its result. */
#define RENDER_PREVIEW_LINES 3
/* A preview of a tool's output: its first max_lines non-blank lines, each "\n  │ line" cut at
 * max_bytes, then "\n  │ … N more lines" when there are more. */
void render_preview(sbuf_t *b, const char *text, int max_lines, size_t max_bytes);
/* Text on one line: whitespace runs become one space, at most max bytes (then "…"). */
void render_one_line(sbuf_t *b, const char *s, size_t max);

#endif
