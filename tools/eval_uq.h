/* qualm eval with a UE head, OOD sets and shift sets (tools/eval_uq.c). */
#ifndef QLM_TOOLS_EVAL_UQ_H
#define QLM_TOOLS_EVAL_UQ_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *path;     /* model file */
    const char *data, *data_dir, *split;
    const char *ood_dir;  /* folder of the MNIST IDX files, or NULL (default dir) */
    const char *method;   /* softmax|temperature|tta|mcdropout|... */
    const char *ood;      /* comma list or "all", or NULL */
    const char *shift;    /* "all", NAME or NAME:SEV, comma-separated, or NULL */
    int passes, batch, threads, limit, bootstrap;
    uint64_t seed;
    float dropout;        /* int8 mcdropout: the float model's dropout probability */
    bool json;
} eval_uq_args;

/* Run the evaluation and print it; returns the process exit code. */
int eval_uq(const eval_uq_args *a);

#endif
