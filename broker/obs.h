/* obs: what the broker observes as it works, for its metrics: turn latency
 * and time to first token per model and role (histograms since start), and
 * refused connections per reason. No dependencies: any module may report. */
#ifndef CADRE_BROKER_OBS_H
#define CADRE_BROKER_OBS_H

#include "sbuf.h"

typedef struct obs obs_t;

obs_t *obs_new(void);
void obs_destroy(obs_t **self_p);
/* A turn that ended well: its latency, and its time to first token (< 0: none came). */
void obs_turn(obs_t *self, const char *model, const char *role, double latency_s, double ttft_s);
/* A refused connection or hello; reason is a short label ("unknown_key", ...). */
void obs_refused(obs_t *self, const char *reason);
/* A frame the broker could not decode (or that broke the protocol). */
void obs_rejected(obs_t *self);
/* Appends v as a label value of the Prometheus text format (\, " and newlines escaped). */
void obs_label(sbuf_t *out, const char *v);
/* Appends the histograms and counters in the Prometheus text format. */
void obs_render(const obs_t *self, sbuf_t *out);

#endif
