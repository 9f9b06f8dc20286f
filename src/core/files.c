/* Whole-file reads, atomic writes (temp + fsync + rename), CRC-32, clock. */
#include "qualm/core.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static qlm_status write_all(int fd, const uint8_t *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return QLM_ERR_IO;
        }
        p += w;
        len -= (size_t)w;
    }
    return QLM_OK;
}

/* fsync the directory holding path so the rename itself is durable. */
static void sync_parent_dir(const char *path) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

qlm_status qlm_write_atomic(const char *path, const void *data, size_t len,
                            qlm_err *err) {
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return qlm_err_set(err, QLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (write_all(fd, data, len) != QLM_OK || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return qlm_err_set(err, QLM_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return qlm_err_set(err, QLM_ERR_IO, "%s: cannot replace: %s", path, strerror(e));
    }
    sync_parent_dir(path);
    return QLM_OK;
}

qlm_status qlm_read_file(const char *path, uint8_t **data, size_t *len,
                         qlm_err *err) {
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qlm_err_set(err, QLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qlm_err_set(err, QLM_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return qlm_err_set(err, QLM_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) {
        free(buf);
        return qlm_err_set(err, QLM_ERR_IO, "%s: read %zu of %zu bytes", path, got, size);
    }
    *data = buf;
    *len = size;
    return QLM_OK;
}

uint32_t qlm_crc32(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    /* zlib's crc32 takes uInt lengths: feed large buffers in pieces. */
    while (len > 0) {
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return crc;
}

double qlm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
