/*
 * MPI transport of a distributed study (OpenMPI). Rank 0 owns the
 * database; other ranks run their share of cells (whole families, so no
 * rank waits for another's model) and send each result JSON to rank 0:
 *   tag 1: int[2] {cell index, byte length}, then tag 2: the JSON bytes;
 *   tag 3: int 0 = "this rank is finished".
 * Built only as the optional target qualm_study_mpi (CMakeLists.txt).
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/study.h"

enum { TAG_HEAD = 1, TAG_BODY = 2, TAG_DONE = 3 };

static qlm_status bcast_done(void *ctx, uint8_t *done, int n, qlm_err *err) {
    (void)ctx;
    if (MPI_Bcast(done, n, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return qlm_err_set(err, QLM_ERR_IO, "MPI_Bcast failed");
    return QLM_OK;
}

static qlm_status send_result(void *ctx, int idx, const char *json, qlm_err *err) {
    (void)ctx;
    size_t len = strlen(json);
    if (len > (size_t)1 << 30) return qlm_err_set(err, QLM_ERR_ARG, "cell %d: result too large for MPI", idx + 1);
    int head[2] = {idx, (int)len};
    if (MPI_Send(head, 2, MPI_INT, 0, TAG_HEAD, MPI_COMM_WORLD) != MPI_SUCCESS ||
        MPI_Send(json, (int)len, MPI_CHAR, 0, TAG_BODY, MPI_COMM_WORLD) != MPI_SUCCESS)
        return qlm_err_set(err, QLM_ERR_IO, "MPI_Send of cell %d failed", idx + 1);
    return QLM_OK;
}

static qlm_status send_finished(void *ctx, qlm_err *err) {
    (void)ctx;
    int zero = 0;
    if (MPI_Send(&zero, 1, MPI_INT, 0, TAG_DONE, MPI_COMM_WORLD) != MPI_SUCCESS)
        return qlm_err_set(err, QLM_ERR_IO, "MPI_Send failed");
    return QLM_OK;
}

static int poll_msg(void *ctx, int *idx, char **json, qlm_err *err) {
    (void)ctx;
    int flag = 0;
    MPI_Status ms;
    if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &ms) != MPI_SUCCESS) {
        qlm_err_set(err, QLM_ERR_IO, "MPI_Iprobe failed");
        return -1;
    }
    if (!flag) return 0;
    int src = ms.MPI_SOURCE;
    if (ms.MPI_TAG == TAG_DONE) {
        int zero;
        MPI_Recv(&zero, 1, MPI_INT, src, TAG_DONE, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        return 2;
    }
    if (ms.MPI_TAG != TAG_HEAD) {
        qlm_err_set(err, QLM_ERR_INTERNAL, "unexpected MPI tag %d from rank %d", ms.MPI_TAG, src);
        return -1;
    }
    int head[2];
    MPI_Recv(head, 2, MPI_INT, src, TAG_HEAD, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    char *text = malloc((size_t)head[1] + 1);
    if (!text) {
        qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
        return -1;
    }
    /* the body follows its head from the same rank (MPI keeps the order) */
    MPI_Recv(text, head[1], MPI_CHAR, src, TAG_BODY, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    text[head[1]] = '\0';
    *idx = head[0];
    *json = text;
    return 1;
}

qlm_status qlm_study_mpi_init(int *argc, char ***argv, qlm_study_transport *t, qlm_err *err) {
    memset(t, 0, sizeof *t);
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return qlm_err_set(err, QLM_ERR_IO, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &t->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &t->size);
    t->bcast_done = bcast_done;
    t->send_result = send_result;
    t->send_finished = send_finished;
    t->poll = poll_msg;
    return QLM_OK;
}

void qlm_study_mpi_finalize(qlm_study_transport *t) {
    (void)t;
    MPI_Finalize();
}
