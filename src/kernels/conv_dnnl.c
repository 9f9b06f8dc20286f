/*
 * src/kernels/conv_dnnl.c — conv2d on oneDNN (the im2col-path shapes).
 *
 * Why oneDNN: its JIT direct convolutions (the same library PyTorch uses)
 * were measured 2-3x faster than im2col + OpenBLAS on the resnet20 3x3
 * layers (batch 128, 2 threads), mainly because the skinny GEMMs (16-64
 * channels) waste most of sgemm's time in packing.
 *
 * Threading and determinism: the batch is cut into QLM__DNNL_SLOTS fixed
 * image ranges (a function of n only). Each slot runs one oneDNN primitive
 * with ONE OpenMP thread, on the qlm_pool; the per-slot weight-gradient
 * partials are summed in slot order. So results depend on the shape only,
 * never on the thread count, and no OpenMP team is ever started (no OMP
 * threads spinning next to the pool's threads). The OpenMP thread count of
 * the calling thread is set to 1 around each oneDNN call and restored.
 *
 * State: an engine and the primitives are created per call and destroyed
 * before returning (measured ~2.5 us per primitive: oneDNN's own primitive
 * cache makes the re-creation a lookup), so qualm keeps no state.
 * oneDNN's scratchpad is user-mode: it lives in the caller's scratch.
 *
 * Layouts: activations are nhwc; our weights [oc][kh][kw][ic/g] are ohwi
 * (gohwi when grouped). oneDNN's fast kernels want blocked weights, so the
 * weights are reordered into scratch (forward/backward-data) and the weight
 * gradient is produced blocked and reordered back (a permutation: exact).
 *
 * Any oneDNN failure makes the entry points return false before touching
 * the outputs (dx is accumulated from a scratch copy only once all slots
 * succeeded), and conv.c then runs the im2col path instead.
 */
#include <dnnl.h>
#include <string.h>

#include "kernels/kern_internal.h"

/* libgomp's API (the Debian oneDNN build uses OpenMP); declared here so
 * the build needs no -fopenmp nor omp.h (clang may lack it). */
int omp_get_max_threads(void);
void omp_set_num_threads(int n);

enum { DIR_FWD = 0, DIR_BWD_DATA, DIR_BWD_WEIGHTS, DIR_COUNT };

static size_t align64(size_t b) { return (b + 63) & ~(size_t)63; }

static int omp_one(void) {
    const int prev = omp_get_max_threads();
    if (prev != 1) omp_set_num_threads(1);
    return prev;
}

static void omp_restore(int prev) {
    if (prev != 1) omp_set_num_threads(prev);
}

/* Images of slot i: a fixed split of n (never of the thread count). */
static int n_slots_of(const qlm_conv_shape *s) {
    return s->n < QLM__DNNL_SLOTS ? s->n : QLM__DNNL_SLOTS;
}

static void slot_images(const qlm_conv_shape *s, int slot, int *i0, int *i1) {
    const int ns = n_slots_of(s);
    *i0 = (int)((int64_t)s->n * slot / ns);
    *i1 = (int)((int64_t)s->n * (slot + 1) / ns);
}

/* Primitives for one direction, for both slot batch sizes (n/S, n/S+1). */
typedef struct {
    dnnl_engine_t eng;
    int nb[2];
    dnnl_primitive_desc_t pd[2];
    dnnl_primitive_t prim[2];
    dnnl_memory_desc_t user_w; /* ohwi / gohwi */
    const dnnl_memory_desc_t *w_md; /* the primitive's (diff_)weights */
    size_t pad_bytes;               /* max scratchpad of the two sizes */
} dplan;

static void md_act(dnnl_memory_desc_t *md, int n, int c, int h, int w) {
    dnnl_dims_t d = {n, c, h, w};
    dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nhwc);
}

static dnnl_status_t md_w(const qlm_conv_shape *s, dnnl_format_tag_t any,
                          dnnl_memory_desc_t *md) {
    const int g = s->groups;
    if (g == 1) {
        dnnl_dims_t d = {s->out_c, s->in_c, s->k_h, s->k_w};
        return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32,
                                            any ? any : dnnl_ohwi);
    }
    dnnl_dims_t d = {g, s->out_c / g, s->in_c / g, s->k_h, s->k_w};
    return dnnl_memory_desc_init_by_tag(md, 5, d, dnnl_f32,
                                        any ? any : dnnl_gohwi);
}

/* Op descriptor of direction dir for nb images. */
static dnnl_status_t op_desc(const qlm_conv_shape *s, int dir, int nb,
                             int with_bias, dnnl_convolution_desc_t *cd) {
    dnnl_memory_desc_t src, dst, w, b;
    md_act(&src, nb, s->in_c, s->in_h, s->in_w);
    md_act(&dst, nb, s->out_c, s->out_h, s->out_w);
    dnnl_status_t st = md_w(s, dnnl_format_tag_any, &w);
    if (st != dnnl_success) return st;
    dnnl_dims_t bd = {s->out_c};
    dnnl_memory_desc_init_by_tag(&b, 1, bd, dnnl_f32, dnnl_a);
    const int pb = (s->out_h - 1) * s->stride_h + s->k_h - s->in_h -
                   s->pad_top;
    const int pr = (s->out_w - 1) * s->stride_w + s->k_w - s->in_w -
                   s->pad_left;
    dnnl_dims_t strides = {s->stride_h, s->stride_w};
    dnnl_dims_t pl = {s->pad_top, s->pad_left}, ph = {pb, pr};
    const dnnl_alg_kind_t alg = dnnl_convolution_direct;
    if (dir == DIR_FWD)
        return dnnl_convolution_forward_desc_init(
            cd, dnnl_forward_training, alg, &src, &w, with_bias ? &b : NULL,
            &dst, strides, pl, ph);
    if (dir == DIR_BWD_DATA)
        return dnnl_convolution_backward_data_desc_init(cd, alg, &src, &w,
                                                        &dst, strides, pl, ph);
    return dnnl_convolution_backward_weights_desc_init(cd, alg, &src, &w,
                                                       NULL, &dst, strides,
                                                       pl, ph);
}

static dnnl_status_t make_pd(const qlm_conv_shape *s, int dir, int nb,
                             int with_bias, dnnl_engine_t eng,
                             dnnl_primitive_desc_t *pd) {
    dnnl_primitive_attr_t at = NULL;
    dnnl_primitive_desc_t hint = NULL;
    dnnl_convolution_desc_t cd;
    dnnl_status_t st = dnnl_primitive_attr_create(&at);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(
            at, dnnl_scratchpad_mode_user);
    /* backward primitives take the forward one as a hint */
    if (st == dnnl_success && dir != DIR_FWD)
        st = op_desc(s, DIR_FWD, nb, 0, &cd);
    if (st == dnnl_success && dir != DIR_FWD)
        st = dnnl_primitive_desc_create(&hint, &cd, at, eng, NULL);
    if (st == dnnl_success) st = op_desc(s, dir, nb, with_bias, &cd);
    if (st == dnnl_success)
        st = dnnl_primitive_desc_create(pd, &cd, at, eng, hint);
    if (hint) dnnl_primitive_desc_destroy(hint);
    if (at) dnnl_primitive_attr_destroy(at);
    return st;
}

static void dplan_free(dplan *p) {
    for (int i = 0; i < 2; i++) {
        if (p->prim[i]) dnnl_primitive_destroy(p->prim[i]);
        if (p->pd[i]) dnnl_primitive_desc_destroy(p->pd[i]);
    }
    if (p->eng) dnnl_engine_destroy(p->eng);
    memset(p, 0, sizeof *p);
}

/* Build the primitives of direction dir; false (nothing held) on failure. */
static bool dplan_make(const qlm_conv_shape *s, int dir, int with_bias,
                       bool make_prims, dplan *p) {
    memset(p, 0, sizeof *p);
    const int ns = n_slots_of(s);
    p->nb[0] = s->n / ns;
    p->nb[1] = s->n % ns ? p->nb[0] + 1 : p->nb[0];
    const dnnl_query_t wq = dir == DIR_BWD_WEIGHTS ? dnnl_query_diff_weights_md
                                                   : dnnl_query_weights_md;
    dnnl_status_t st = dnnl_engine_create(&p->eng, dnnl_cpu, 0);
    if (st == dnnl_success) st = md_w(s, 0, &p->user_w);
    for (int i = 0; i < 2 && st == dnnl_success; i++) {
        st = make_pd(s, dir, p->nb[i], with_bias, p->eng, &p->pd[i]);
        if (st != dnnl_success) break;
        const dnnl_memory_desc_t *pad =
            dnnl_primitive_desc_query_md(p->pd[i], dnnl_query_scratchpad_md, 0);
        const size_t pb = pad ? dnnl_memory_desc_get_size(pad) : 0;
        if (pb > p->pad_bytes) p->pad_bytes = pb;
        const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(p->pd[i],
                                                                    wq, 0);
        /* one weight buffer serves both sizes: their layouts must agree */
        if (!w || (i == 1 && !dnnl_memory_desc_equal(w, p->w_md)))
            st = dnnl_unimplemented;
        p->w_md = w;
        if (st == dnnl_success && make_prims)
            st = dnnl_primitive_create(&p->prim[i], p->pd[i]);
    }
    if (st != dnnl_success) dplan_free(p);
    return st == dnnl_success;
}

/* Weights in the primitive's layout: user_w (ld) when they agree. */
static bool w_is_user(const dplan *p) {
    return dnnl_memory_desc_equal(p->w_md, &p->user_w) != 0;
}

static size_t w_bytes(const dplan *p) {
    return w_is_user(p) ? 0 : align64(dnnl_memory_desc_get_size(p->w_md));
}

/* Reorder from (md a, pa) to (md b, pb), on the calling thread. */
static dnnl_status_t reorder(dnnl_engine_t eng, const dnnl_memory_desc_t *a,
                             const void *pa, const dnnl_memory_desc_t *b,
                             void *pb) {
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t ma = NULL, mb = NULL;
    dnnl_stream_t str = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, a, eng, b,
                                                          eng, NULL);
    if (st == dnnl_success) st = dnnl_primitive_create(&r, pd);
    if (st == dnnl_success)
        st = dnnl_memory_create(&ma, a, eng, (void *)(uintptr_t)pa);
    if (st == dnnl_success) st = dnnl_memory_create(&mb, b, eng, pb);
    if (st == dnnl_success)
        st = dnnl_stream_create(&str, eng, dnnl_stream_default_flags);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ma}, {DNNL_ARG_TO, mb}};
        st = dnnl_primitive_execute(r, str, 2, args);
    }
    if (str) dnnl_stream_destroy(str);
    if (mb) dnnl_memory_destroy(mb);
    if (ma) dnnl_memory_destroy(ma);
    if (r) dnnl_primitive_destroy(r);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return st;
}

/* ------------------------------------------------------ slot execution */

/* One argument of a primitive: (arg id, query for its md, data). */
typedef struct {
    int arg;
    dnnl_query_t q;
    int q_index;
    const void *data;
} darg;

enum { MAX_ARGS = 5 };

/* Run prim with its args on a fresh stream (one OMP thread). */
static dnnl_status_t exec_prim(const dplan *p, int which, const darg *a,
                               int na) {
    dnnl_memory_t m[MAX_ARGS] = {0};
    dnnl_exec_arg_t args[MAX_ARGS];
    dnnl_stream_t str = NULL;
    const int prev = omp_one();
    dnnl_status_t st = dnnl_stream_create(&str, p->eng,
                                          dnnl_stream_default_flags);
    for (int i = 0; i < na && st == dnnl_success; i++) {
        const dnnl_memory_desc_t *md =
            dnnl_primitive_desc_query_md(p->pd[which], a[i].q, a[i].q_index);
        st = md ? dnnl_memory_create(&m[i], md, p->eng,
                                     (void *)(uintptr_t)a[i].data)
                : dnnl_invalid_arguments;
        args[i] = (dnnl_exec_arg_t){a[i].arg, m[i]};
    }
    if (st == dnnl_success)
        st = dnnl_primitive_execute(p->prim[which], str, na, args);
    for (int i = 0; i < na; i++)
        if (m[i]) dnnl_memory_destroy(m[i]);
    if (str) dnnl_stream_destroy(str);
    omp_restore(prev);
    return st;
}

typedef struct {
    const qlm_conv_shape *s;
    const dplan *p;
    int dir;
    const float *x, *w, *bias, *dy;
    float *y, *dx_tmp;
    uint8_t *pads, *dw_parts; /* per slot: scratchpad, dw partial */
    size_t dw_part_bytes;
    int failed[QLM__DNNL_SLOTS];
} drun;

static void slot_task(void *ctx, int slot, int thread) {
    (void)thread;
    drun *r = ctx;
    const qlm_conv_shape *s = r->s;
    int i0, i1;
    slot_images(s, slot, &i0, &i1);
    const int which = i1 - i0 == r->p->nb[0] ? 0 : 1;
    const int64_t xo = (int64_t)i0 * s->in_h * s->in_w * s->in_c;
    const int64_t yo = (int64_t)i0 * s->out_h * s->out_w * s->out_c;
    const void *pad = r->pads + (size_t)slot * r->p->pad_bytes;
    darg a[MAX_ARGS];
    int na = 0;
    a[na++] = (darg){DNNL_ARG_SCRATCHPAD, dnnl_query_scratchpad_md, 0, pad};
    if (r->dir == DIR_FWD) {
        a[na++] = (darg){DNNL_ARG_SRC, dnnl_query_src_md, 0, r->x + xo};
        a[na++] = (darg){DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, r->w};
        a[na++] = (darg){DNNL_ARG_DST, dnnl_query_dst_md, 0, r->y + yo};
        if (r->bias)
            a[na++] = (darg){DNNL_ARG_BIAS, dnnl_query_weights_md, 1,
                             r->bias};
    } else if (r->dir == DIR_BWD_DATA) {
        a[na++] = (darg){DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0,
                         r->dx_tmp + xo};
        a[na++] = (darg){DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, r->w};
        a[na++] = (darg){DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0,
                         r->dy + yo};
    } else {
        a[na++] = (darg){DNNL_ARG_SRC, dnnl_query_src_md, 0, r->x + xo};
        a[na++] = (darg){DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md,
                         0, r->dw_parts + (size_t)slot * r->dw_part_bytes};
        a[na++] = (darg){DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0,
                         r->dy + yo};
    }
    r->failed[slot] = exec_prim(r->p, which, a, na) != dnnl_success;
}

static bool run_slots(drun *r, qlm_pool *pool) {
    const int ns = n_slots_of(r->s);
    memset(r->failed, 0, sizeof r->failed);
    qlm_pool_run(pool, ns, slot_task, r);
    for (int i = 0; i < ns; i++)
        if (r->failed[i]) return false;
    return true;
}

/* ------------------------------------------------------------ forward */

bool qlm__dnnl_supported(const qlm_conv_shape *s) {
    return s->n >= 1 && s->groups >= 1;
}

size_t qlm__dnnl_fwd_scratch(const qlm_conv_shape *s) {
    if (!qlm__dnnl_supported(s)) return 0;
    const int prev = omp_one();
    dplan p;
    size_t b = 0;
    if (dplan_make(s, DIR_FWD, 1, false, &p)) {
        b = w_bytes(&p) + (size_t)n_slots_of(s) * align64(p.pad_bytes);
        b = b ? b : 64; /* nonzero: 0 means "not supported" */
        dplan_free(&p);
    }
    omp_restore(prev);
    return b;
}

bool qlm__dnnl_fwd(const qlm_conv_shape *s, const float *x, const float *w,
                   const float *bias, float *y, void *scratch,
                   qlm_pool *pool) {
    if (!qlm__dnnl_supported(s)) return false;
    const int prev = omp_one();
    dplan p;
    bool ok = dplan_make(s, DIR_FWD, bias != NULL, true, &p);
    if (ok) {
        uint8_t *sc = scratch;
        const float *wk = w;
        if (!w_is_user(&p)) {
            ok = reorder(p.eng, &p.user_w, w, p.w_md, sc) == dnnl_success;
            wk = (const float *)sc;
        }
        p.pad_bytes = align64(p.pad_bytes);
        drun r = {.s = s, .p = &p, .dir = DIR_FWD, .x = x, .w = wk,
                  .bias = bias, .y = y, .pads = sc + w_bytes(&p)};
        ok = ok && run_slots(&r, pool);
        dplan_free(&p);
    }
    omp_restore(prev);
    return ok;
}

/* ----------------------------------------------------------- backward */

/*
 * Scratch: [bwd-data weights][dx copy (n images)][S bwd-data pads]
 *          [S bwd-weights pads][S dw partials]
 */
typedef struct {
    size_t wd, dx, pad_d, pad_w, part;
} bwd_layout;

static bool bwd_plans(const qlm_conv_shape *s, bool prims, dplan *pd,
                      dplan *pw, bwd_layout *l) {
    if (!dplan_make(s, DIR_BWD_WEIGHTS, 0, prims, pw)) return false;
    if (!dplan_make(s, DIR_BWD_DATA, 0, prims, pd)) {
        dplan_free(pw);
        return false;
    }
    l->wd = w_bytes(pd);
    l->dx = align64(sizeof(float) * (size_t)s->n * (size_t)s->in_h *
                    (size_t)s->in_w * (size_t)s->in_c);
    l->pad_d = align64(pd->pad_bytes);
    l->pad_w = align64(pw->pad_bytes);
    l->part = align64(dnnl_memory_desc_get_size(pw->w_md));
    return true;
}

size_t qlm__dnnl_bwd_scratch(const qlm_conv_shape *s) {
    if (!qlm__dnnl_supported(s)) return 0;
    const int prev = omp_one();
    dplan pd, pw;
    bwd_layout l;
    size_t b = 0;
    if (bwd_plans(s, false, &pd, &pw, &l)) {
        b = l.wd + l.dx +
            (size_t)n_slots_of(s) * (l.pad_d + l.pad_w + l.part);
        dplan_free(&pd);
        dplan_free(&pw);
    }
    omp_restore(prev);
    return b;
}

/* dx += dx_tmp, one task per slot (the slot's images). */
typedef struct {
    const qlm_conv_shape *s;
    const float *src;
    float *dx;
    const qlm__kops *k;
} dx_add;

static void dx_add_task(void *ctx, int slot, int thread) {
    (void)thread;
    const dx_add *a = ctx;
    const int64_t img = (int64_t)a->s->in_h * a->s->in_w * a->s->in_c;
    int i0, i1;
    slot_images(a->s, slot, &i0, &i1);
    a->k->add((i1 - i0) * img, a->src + i0 * img, a->dx + i0 * img);
}

bool qlm__dnnl_bwd(const qlm_conv_shape *s, const float *x, const float *w,
                   const float *dy, float *dx, float *dw, void *scratch,
                   qlm_pool *pool, const qlm__kops *k) {
    if (!qlm__dnnl_supported(s)) return false;
    const int prev = omp_one();
    dplan pd, pw;
    bwd_layout l;
    bool ok = bwd_plans(s, true, &pd, &pw, &l);
    if (!ok) {
        omp_restore(prev);
        return false;
    }
    const int ns = n_slots_of(s);
    uint8_t *sc = scratch;
    float *dx_tmp = (float *)(sc + l.wd);
    uint8_t *pads_d = sc + l.wd + l.dx;
    uint8_t *pads_w = pads_d + (size_t)ns * l.pad_d;
    uint8_t *parts = pads_w + (size_t)ns * l.pad_w;
    pw.pad_bytes = l.pad_w;
    drun rw = {.s = s, .p = &pw, .dir = DIR_BWD_WEIGHTS, .x = x, .dy = dy,
               .pads = pads_w, .dw_parts = parts, .dw_part_bytes = l.part};
    ok = run_slots(&rw, pool);
    if (ok && dx) {
        const float *wk = w;
        if (!w_is_user(&pd)) {
            ok = reorder(pd.eng, &pd.user_w, w, pd.w_md, sc) == dnnl_success;
            wk = (const float *)sc;
        }
        pd.pad_bytes = l.pad_d;
        drun rd = {.s = s, .p = &pd, .dir = DIR_BWD_DATA, .w = wk, .dy = dy,
                   .dx_tmp = dx_tmp, .pads = pads_d};
        ok = ok && run_slots(&rd, pool);
    }
    if (ok) {
        /* partials in slot order (fixed), then back to ohwi: exact */
        const int64_t len = (int64_t)(dnnl_memory_desc_get_size(pw.w_md) /
                                      sizeof(float));
        for (int i = 1; i < ns; i++)
            k->add(len, (const float *)(parts + (size_t)i * l.part),
                   (float *)parts);
        ok = reorder(pw.eng, pw.w_md, parts, &pw.user_w, dw) == dnnl_success;
    }
    if (ok && dx) {
        dx_add a = {.s = s, .src = dx_tmp, .dx = dx, .k = k};
        qlm_pool_run(pool, ns, dx_add_task, &a);
    }
    dplan_free(&pd);
    dplan_free(&pw);
    omp_restore(prev);
    return ok;
}
