#include "progress.h"

#include <stdarg.h>

#include "qualm/core.h"

void qlm_progress_init(qlm_progress *p, FILE *out, bool tty, bool quiet,
                       int64_t done_at_start) {
    p->out = out;
    p->tty = tty;
    p->quiet = quiet;
    p->start = qlm_now();
    p->last_print = 0;
    p->done_at_start = done_at_start;
}

const char *qlm_format_duration(double s, char *buf, size_t len) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, len, "--:--");
        return buf;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

void qlm_progress_step(qlm_progress *p, int epoch, int epochs, int64_t step_in_epoch,
                       int64_t steps_per_epoch, int64_t step, int64_t total,
                       double loss, double acc, double images_per_s) {
    if (p->quiet) return;
    double now = qlm_now();
    bool last = step_in_epoch == steps_per_epoch;
    /* A terminal gets ~5 updates a second; a log gets a line every 15 s. */
    double every = p->tty ? 0.2 : 15.0;
    if (!last && now - p->last_print < every) return;
    p->last_print = now;
    int64_t done = step - p->done_at_start;
    double eta = done > 0 ? (now - p->start) / (double)done * (double)(total - step) : -1;
    char eta_s[32];
    qlm_format_duration(eta, eta_s, sizeof eta_s);
    if (p->tty) {
        enum { WIDTH = 24 };
        char bar[WIDTH + 1];
        int fill = (int)(WIDTH * step_in_epoch / (steps_per_epoch ? steps_per_epoch : 1));
        for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
        bar[WIDTH] = '\0';
        fprintf(p->out, "\r\033[Kepoch %d/%d [%s] %lld/%lld loss %.4f acc %5.2f%% %6.0f img/s ETA %s",
                epoch, epochs, bar, (long long)step_in_epoch, (long long)steps_per_epoch,
                loss, 100 * acc, images_per_s, eta_s);
    } else {
        fprintf(p->out, "epoch %d/%d step %lld/%lld loss %.4f acc %.2f%% %.0f img/s ETA %s\n",
                epoch, epochs, (long long)step_in_epoch, (long long)steps_per_epoch, loss,
                100 * acc, images_per_s, eta_s);
    }
    fflush(p->out);
}

void qlm_progress_line(qlm_progress *p, const char *fmt, ...) {
    if (p->quiet) return;
    if (p->tty) fputs("\r\033[K", p->out);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    fflush(p->out);
}
