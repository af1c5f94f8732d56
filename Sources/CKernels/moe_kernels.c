// Element-wise kernels in three builds of one source (kernel_body.inc): AVX-512, AVX2+FMA
// and baseline SSE2, picked once from CPUID. Swift compiles for baseline x86-64, where
// these loops would run 4 lanes wide without FMA.
#include "moe_kernels.h"
#include "moe_blas.h"
#include <math.h>
#include <string.h>

#define W 16
#define SUF avx512
#define ATTR __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#include "kernel_body.inc"
#undef W
#undef SUF
#undef ATTR

#define W 8
#define SUF avx2
#define ATTR __attribute__((target("avx2,fma")))
#include "kernel_body.inc"
#undef W
#undef SUF
#undef ATTR

#define W 4
#define SUF sse2
#define ATTR
#include "kernel_body.inc"
#undef W
#undef SUF
#undef ATTR

static int level = -1;

static int current(void) {
    if (level < 0) level = moe_cpu_level();
    return level;
}

int moe_kernels_level(void) { return current(); }

int moe_kernels_set_level(int wanted) {
    int best = moe_cpu_level();
    level = wanted < 0 ? best : (wanted > best ? best : wanted);
    return level;
}

const char *moe_kernels_name(void) {
    switch (current()) {
    case 2: return "avx512";
    case 1: return "avx2";
    default: return "sse2";
    }
}

#define DISPATCH(fn, ...) \
    switch (current()) { \
    case 2: return fn##avx512(__VA_ARGS__); \
    case 1: return fn##avx2(__VA_ARGS__); \
    default: return fn##sse2(__VA_ARGS__); \
    }

void moe_gelu_forward(float *out, const float *in, long n) { DISPATCH(gelu_forward_, out, in, n) }
void moe_gelu_backward(float *d, const float *h, long n) { DISPATCH(gelu_backward_, d, h, n) }
void moe_dropout(float *x, long n, unsigned long long key, unsigned long long start, float rate, float keep) {
    DISPATCH(dropout_, x, n, key, start, rate, keep)
}
void moe_causal_softmax(float *p, long t) { DISPATCH(causal_softmax_, p, t) }
void moe_causal_softmax_backward(float *d, const float *p, long t) { DISPATCH(causal_softmax_backward_, d, p, t) }
void moe_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                           long rows, long c, float eps) {
    DISPATCH(layernorm_forward_, out, mean, rstd, in, w, b, rows, c, eps)
}
void moe_layernorm_backward_input(float *dinp, const float *dout, const float *in, const float *w,
                                  const float *mean, const float *rstd, long rows, long c) {
    DISPATCH(layernorm_backward_input_, dinp, dout, in, w, mean, rstd, rows, c)
}
void moe_layernorm_backward_params(float *dw, float *db, const float *dout, const float *in, const float *mean,
                                   const float *rstd, long rows, long c, long c0, long c1) {
    DISPATCH(layernorm_backward_params_, dw, db, dout, in, mean, rstd, rows, c, c0, c1)
}
void moe_adamw(float *p, const float *g, float *m, float *v, long n, float scale, float beta1, float beta2,
               float c1, float c2, float lr, float eps, float decay) {
    DISPATCH(adamw_, p, g, m, v, n, scale, beta1, beta2, c1, c2, lr, eps, decay)
}
double moe_sum_squares(const float *g, long n) { DISPATCH(sum_squares_, g, n) }
int moe_cross_entropy_row(float *x, long v, long target, float scale, int backward, float *loss) {
    DISPATCH(cross_entropy_row_, x, v, target, scale, backward, loss)
}
