/* view: what the broker's streams and events look like on an out_t display.
 *
 * Shared by the console and `cadre watch`: streamed pieces become prefixed
 * lines of their agent; events (turns ending or failing, agents spawned,
 * status changes, summaries, tool calls, nodes) become short lines.
 */
#ifndef CADRE_VIEW_H
#define CADRE_VIEW_H

#include <jansson.h>
#include <stdbool.h>

#include "output.h"
#include "proto.h"

typedef struct view view_t;

/* A view drawing on out (not owned). */
view_t *view_new(out_t *out);
void view_free(view_t **self_p);

/* Streaming display of the main agent: token by token (live region), or its
 * answer printed when its turn is done. */
void view_set_stream(view_t *v, bool on);
bool view_stream(const view_t *v);
/* Whether thinking is shown (dimmed). */
void view_set_thinking(view_t *v, bool on);
bool view_thinking(const view_t *v);

/* Draws a delta message. */
void view_delta(view_t *v, const proto_msg_t *m);
/* Draws an event message. */
void view_event(view_t *v, const proto_msg_t *m);
/* Ends every unfinished line (e.g. the broker restarted). */
void view_end_all(view_t *v);

/* A workflow step's progress mark: ✓ done, ⟳ running (or retrying), ✗ failed, ○ pending. */
const char *view_step_mark(const char *status);

/* A summary {status, key_points, recommendation} as lines of agent id. */
void view_summary(out_t *o, const char *id, const json_t *summary);

#endif
