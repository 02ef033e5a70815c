/* Workflow engine internals shared by workflow.c and workflow_verbs.c. */
#ifndef CADRE_WORKFLOW_INT_H
#define CADRE_WORKFLOW_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* The workflow document with this id, or NULL (borrowed). */
json_t *wf_get(broker_t *b, int64_t id);
int64_t wf_id(const json_t *doc);
const char *wf_status(const json_t *doc);
bool status_is(const json_t *doc, const char *s);
/* Persists the document (before anything is acted on). */
void wf_save(broker_t *b, json_t *doc);
/* A string member, or NULL. */
const char *wf_str(const json_t *o, const char *key);
/* The plan with each step's state, as controllers see it. Caller owns. */
json_t *wf_view(const json_t *doc);
/* Announces a change of the workflow (extra is merged in and taken). */
void wf_event(broker_t *b, const char *kind, json_t *doc, json_t *extra);
/* Validates and estimates a plan into the document (status pending or invalid). */
void assess(broker_t *b, json_t *doc);
/* Stores a new plan and announces it; the document (borrowed) or NULL. */
json_t *propose(broker_t *b, const char *session, json_t *plan, const char *origin);
/* Starts every step whose dependencies are done; ends the workflow when all are. */
void advance(broker_t *b, json_t *doc, int64_t now);
/* Undoes the workflow's changes in reverse order, then finishes it. */
void rollback_start(broker_t *b, json_t *doc, const char *why);
/* Ends a workflow: report, results back to the originating session, event. */
void finish(broker_t *b, json_t *doc, const char *status, const char *why);

#endif
