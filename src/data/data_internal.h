/*
 * src/data/data_internal.h — private glue of the data module: the common
 * head of every dataset that stores or generates u8 pixels, so
 * qlm_dataset_get_u8 reaches them without widening the public vtable (other
 * modules define vtables with positional initializers).
 */
#ifndef QLM_DATA_INTERNAL_H
#define QLM_DATA_INTERNAL_H

#include "qualm/data.h"

typedef qlm_status (*qlm__get_u8_fn)(const qlm_dataset *ds, int64_t i, uint8_t *px,
                                     int32_t *label);

/* First member of the impl of every u8-backed dataset. */
typedef struct {
    qlm__get_u8_fn get_u8;
    float mean, std;
    float lut[256]; /* normalized value of each pixel value */
} qlm__u8_head;

/* Fill lut the way qlm_dataset_from_u8 normalizes (in float). */
void qlm__u8_head_init(qlm__u8_head *h, qlm__get_u8_fn fn, float mean, float std);

/* get() of a u8-backed view: its get_u8, then the look-up table. */
qlm_status qlm__u8_view_get(const qlm_dataset *ds, int64_t i, float *x, int32_t *label);

extern const qlm_dataset_vt qlm__ood_vt;
extern const qlm_dataset_vt qlm__shift_vt;

/* Set ds->name from a formatted label, cut to fit. */
void qlm__dataset_name(qlm_dataset *ds, const char *name);

#endif /* QLM_DATA_INTERNAL_H */
