/* worker: agentd's slot threads (turns and steps) and its restore thread.
 * Internal to agentd. */
#ifndef CADRE_WORKER_H
#define CADRE_WORKER_H

#include <pthread.h>

#include "jobs.h"

/* Starts n slot workers (turns and steps) and one restore worker: threads
 * has n + 1 entries. 0 or -1. */
int workers_start(jobq_t *q, pthread_t *threads, int n);
/* Cancels every job and joins the n + 1 workers. */
void workers_stop(jobq_t *q, pthread_t *threads, int n);

#endif
