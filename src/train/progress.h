/* Progress display for long loops: a bar on a terminal, plain lines otherwise. */
#ifndef QLM_TRAIN_PROGRESS_H
#define QLM_TRAIN_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *out;
    bool tty;
    bool quiet;
    double start;       /* time of the first step of this run */
    double last_print;
    int64_t done_at_start; /* steps already done before this run (resume) */
} qlm_progress;

void qlm_progress_init(qlm_progress *p, FILE *out, bool tty, bool quiet,
                       int64_t done_at_start);

/**
 * Report step `step` of `total` (global counts) within epoch/epochs, with the
 * running loss and accuracy of the epoch and images per second.
 */
void qlm_progress_step(qlm_progress *p, int epoch, int epochs, int64_t step_in_epoch,
                       int64_t steps_per_epoch, int64_t step, int64_t total,
                       double loss, double acc, double images_per_s);

/** Finish the current bar line and print a message line. */
void qlm_progress_line(qlm_progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/** Format seconds as H:MM:SS or M:SS into buf. */
const char *qlm_format_duration(double seconds, char *buf, size_t len);

#endif
