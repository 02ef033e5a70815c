/* Workflow engine internals shared by workflow.c and workflow_verbs.c. */
#ifndef CADRE_WORKFLOW_INT_H
#define CADRE_WORKFLOW_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "workflow.h"

/* The workflow with this id, or NULL (borrowed). */
workflow_t *wf_get(broker_t *b, int64_t id);
/* Persists the workflow (before anything is acted on). */
void wf_save(broker_t *b, workflow_t *wf);
/* Announces a change of the workflow (its wire form; extra is merged in and taken). */
void wf_event(broker_t *b, const char *kind, const workflow_t *wf, json_t *extra);
/* A message about one attempt of a step (workflow, step, attempt set), or NULL. Caller owns. */
proto_msg_t *wf_step_msg(proto_type_t type, int64_t workflow, int64_t step, int64_t attempt);
/* Validates and estimates the workflow's plan (status pending or invalid). */
void assess(broker_t *b, workflow_t *wf);
/* Stores a new plan (taken) and announces it; the workflow (borrowed) or NULL. */
workflow_t *propose(broker_t *b, const char *session, json_t *plan, const char *origin);
/* Starts every step whose dependencies are done; ends the workflow when all are. */
void advance(broker_t *b, workflow_t *wf, int64_t now);
/* Undoes the workflow's changes in reverse order, then finishes it. */
void rollback_start(broker_t *b, workflow_t *wf, const char *why);
/* Ends a workflow: report, results back to the originating session, event. */
void finish(broker_t *b, workflow_t *wf, wf_status_t status, const char *why);

#endif
