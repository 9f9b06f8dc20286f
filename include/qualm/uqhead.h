/*
 * qualm/uqhead.h — the UE head a trained model carries: which method made
 * it and the state its head needs at test time (temperature, EDL evidence,
 * DUQ centroids, DDU class Gaussians, the sampling settings), stored in a
 * .qlm file of any kind (float, int8, fp16, dynamic) as the META key
 * method=NAME plus a "UQHD" section (docs/qlm-format.md). The head runs in
 * float on the graph's (dequantized) outputs, as on the host CPU next to
 * an accelerator.
 *
 * What the graph's final output is, per method (out_dim of apply):
 *   softmax, temperature, edl, ddu   the K logits
 *   duq                              the K x e embeddings W_c f (a linear
 *                                    layer without bias, out = K * e)
 *   mcdropout, ensemble, tta         m >= 1 passes of K logits side by
 *                                    side: out[n][m][K] (out_dim = m * K);
 *                                    the caller runs the passes
 * DDU also needs the pooled features of qlm_uqhead_feature_node.
 */
#ifndef QUALM_UQHEAD_H
#define QUALM_UQHEAD_H

#include "qualm/uq.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qlm_uqhead qlm_uqhead;

/* ------------------------------------------------- the eval side (contract) */

/**
 * Read the UE head stored in a .qlm of any kind (META key method=NAME;
 * absent = softmax, which needs no section). Errors name the file.
 */
qlm_status qlm_uqhead_load(const char *path, qlm_uqhead **out, qlm_err *err);
void qlm_uqhead_free(qlm_uqhead *h);
qlm_uq_method qlm_uqhead_method(const qlm_uqhead *h);
/** K (a file without UQHD: the model's output count, read from the graph). */
int qlm_uqhead_classes(const qlm_uqhead *h);
/** DDU: the graph node whose output the class Gaussians model; else NULL. */
const char *qlm_uqhead_feature_node(const qlm_uqhead *h);
/** NULL-terminated score names; [0] is the method's default uncertainty score. */
const char *const *qlm_uqhead_score_names(const qlm_uqhead *h);

/**
 * out[n][out_dim]: the graph's final output as float (see the table above);
 * feat[n][feat_dim] or NULL (DDU needs it when scores is not NULL).
 * Writes probs[n][K] and scores[n][n_scores] (higher = less certain; either
 * may be NULL). The head is not thread-safe (DDU uses its scratch).
 */
qlm_status qlm_uqhead_apply(const qlm_uqhead *h, int64_t n, const float *out, int out_dim,
                            const float *feat, int feat_dim, double *probs, double *scores,
                            qlm_err *err);

/* ------------------------------------------------------- the training side */

typedef struct {
    qlm_uq_method method;
    int k;                     /* classes */
    double temperature;        /* temperature: T > 0 (1 otherwise) */
    qlm_edl_evidence evidence; /* edl */
    int samples;               /* mcdropout, tta: passes; ensemble: members */
    float dropout;             /* mcdropout: p of the dropout before the head */
    char feature_node[48];     /* ddu */
} qlm_uqhead_spec;

/** Defaults for method m and k classes: T 1, ReLU evidence, 20 samples. */
qlm_uqhead_spec qlm_uqhead_spec_default(qlm_uq_method m, int k);
/** A head without fitted state (DUQ / DDU: call the init functions below). */
qlm_status qlm_uqhead_new(const qlm_uqhead_spec *s, qlm_uqhead **out, qlm_err *err);
const qlm_uqhead_spec *qlm_uqhead_spec_of(const qlm_uqhead *h);
/** Change the temperature of a softmax / temperature head (makes it "temperature"). */
qlm_status qlm_uqhead_set_temperature(qlm_uqhead *h, double t, qlm_err *err);

/** DUQ: allocate the centroid state for embedding size e (qlm_duq_init). */
qlm_status qlm_uqhead_init_duq(qlm_uqhead *h, int e, double sigma, double gamma,
                               qlm_rng *rng, qlm_err *err);
/** The DUQ state (centroids trained by EMA), NULL unless method duq. */
qlm_duq *qlm_uqhead_duq(qlm_uqhead *h);
/** DDU: allocate the class Gaussians of d-dimensional features. */
qlm_status qlm_uqhead_init_gda(qlm_uqhead *h, int d, qlm_err *err);
/** The DDU model (fit it with qlm_gda_fit), NULL unless method ddu. */
qlm_gda *qlm_uqhead_gda(qlm_uqhead *h);

/** A section that rides along with the head (e.g. training state). */
typedef struct {
    char tag[5]; /* four ASCII characters */
    const void *data;
    uint64_t len;
} qlm_uqhead_extra;

/**
 * Rewrite the .qlm file at path (any kind) atomically with META
 * method=NAME and the head's UQHD section (replacing earlier ones), plus
 * the optional extra section (replacing one with the same tag).
 */
qlm_status qlm_uqhead_attach(const char *path, const qlm_uqhead *h,
                             const qlm_uqhead_extra *extra, qlm_err *err);
/** Copy the head of src into dst unless it is plain softmax (nothing to carry). */
qlm_status qlm_uqhead_copy(const char *src, const char *dst, qlm_err *err);
/**
 * The payload of section tag of a .qlm file (malloc'ed into *data, free it),
 * or *data = NULL, *len = 0 when the file has no such section.
 */
qlm_status qlm_uqhead_read_section(const char *path, const char tag[4], void **data,
                                   uint64_t *len, qlm_err *err);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_UQHEAD_H */
