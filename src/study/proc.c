/* Subprocesses of the study: fork + exec (no shell), stdout captured. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "study_internal.h"

int study_proc_run(char *const argv[], const char *log_path, char **out, qlm_err *err) {
    int fds[2];
    if (pipe(fds) != 0) {
        qlm_err_set(err, QLM_ERR_IO, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        qlm_err_set(err, QLM_ERR_IO, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Die with the parent; check it is still there (it may have died before prctl). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        int fd = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644) : open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf && len + 1024 > cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
                cap *= 2;
            }
        }
        char sink[1024];
        ssize_t r = buf ? read(fds[0], buf + len, cap - len - 1) : read(fds[0], sink, sizeof sink);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (buf) len += (size_t)r;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (buf) buf[len] = '\0';
    if (out) *out = buf;
    else free(buf);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

long study_file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

void study_log_tail(const char *path, long from, char *buf, size_t len) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    long size = study_file_size(path);
    if (size - from > 65536) from = size - 65536;
    if (from < 0) from = 0;
    fseek(f, from, SEEK_SET);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        /* progress lines end in \r; keep the text after the last one */
        char *s = strrchr(line, '\r');
        s = s && s[1] && s[1] != '\n' ? s + 1 : line;
        size_t n = strlen(s);
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = '\0';
        if (n) snprintf(buf, len, "%s", s);
    }
    fclose(f);
}

qlm_status study_mkdir(const char *path, qlm_err *err) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return QLM_OK;
    return qlm_err_set(err, QLM_ERR_IO, "%s: cannot create folder: %s", path, strerror(errno));
}
