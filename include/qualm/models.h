/*
 * qualm/models.h — the model zoo of shared/design/models.md, emitted as
 * graphs for any input size and class count.
 */
#ifndef QUALM_MODELS_H
#define QUALM_MODELS_H

#include "qualm/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float alpha;        /* mobilenet_v1 width multiplier (default 0.5 for "mobilenet_v1") */
    float head_dropout; /* dropout p before the final linear layer; 0 = none */
    int stem_stride;    /* 0 = the architecture's default for the input size */
} qlm_model_opts;

/** Defaults: alpha 0.5, no head dropout, default stem stride. */
qlm_model_opts qlm_model_opts_default(void);

/**
 * Build a zoo model by name: "resnet8", "resnet20", "resnet32",
 * "mobilenet_v1" (alpha from opts), "mobilenet_v1_100", "mobilenet_v1_050",
 * "mobilenet_v1_025", "duq_cnn" (feature extractor + linear head).
 * The graph ends with the K logits (no softmax node). Parameters are not
 * initialized: call qlm_graph_init_params.
 */
qlm_status qlm_model_build(const char *name, int in_h, int in_w, int in_c,
                           int n_classes, const qlm_model_opts *opts,
                           qlm_graph **out, qlm_err *err);

/** NULL-terminated list of the names qlm_model_build accepts. */
const char *const *qlm_model_names(void);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_MODELS_H */
