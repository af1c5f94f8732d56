#ifndef MOE_KERNELS_H
#define MOE_KERNELS_H

/// Element-wise kernels of the engine, vectorised for the CPU they run on (AVX-512,
/// AVX2+FMA or SSE2, chosen once from CPUID). For one build and one CPU level, every
/// output element is a fixed function of its inputs: results never depend on threads.

/// The level in use (2 AVX-512, 1 AVX2+FMA, 0 SSE2) and its name.
int moe_kernels_level(void);
const char *moe_kernels_name(void);
/// Selects a level no higher than the CPU's (negative: the CPU's best); returns it. For tests.
int moe_kernels_set_level(int level);

/// out = gelu(in), tanh form.
void moe_gelu_forward(float *out, const float *in, long n);
/// d *= gelu'(h).
void moe_gelu_backward(float *d, const float *h, long n);
/// Inverted dropout of x[0..<n), elements start..<start+n of the stream `key`: x[i] = 0
/// where the stream's uniform (CounterRng.uniform(key:index:)) is below rate, else x[i]·keep.
void moe_dropout(float *x, long n, unsigned long long key, unsigned long long start, float rate, float keep);
/// (T, T) scores p, in place: row t becomes the softmax of its columns 0...t, zeros after.
void moe_causal_softmax(float *p, long t);
/// (T, T) d, in place: row t becomes p ⊙ (d − Σ_j p·d) over columns 0...t, zeros after.
void moe_causal_softmax_backward(float *d, const float *p, long t);
void moe_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                           long rows, long c, float eps);
/// dinp += ∂L/∂x for each row.
void moe_layernorm_backward_input(float *dinp, const float *dout, const float *in, const float *w,
                                  const float *mean, const float *rstd, long rows, long c);
/// dw[j] += Σ_rows x̂·dout, db[j] += Σ_rows dout for j in [c0, c1); either may be NULL.
void moe_layernorm_backward_params(float *dw, float *db, const float *dout, const float *in, const float *mean,
                                   const float *rstd, long rows, long c, long c0, long c1);
/// One AdamW update of n parameters (bias corrections c1, c2; decay = lr·weight decay or 0).
void moe_adamw(float *p, const float *g, float *m, float *v, long n, float scale, float beta1, float beta2,
               float c1, float c2, float lr, float eps, float decay);
/// Σ g² in fp32, vector lanes summed in a fixed order.
double moe_sum_squares(const float *g, long n);
/// One row of softmax cross-entropy; see Ops.crossEntropy. Returns 1 when the argmax hits.
int moe_cross_entropy_row(float *x, long v, long target, float scale, int backward, float *loss);

/// A parallel pass: fn(ctx, part) for part in 0..<parts, part 0 on the calling thread,
/// the others on persistent helper threads; returns when all have finished, with the
/// number of parts run (fewer only if threads could not be created: then the caller
/// must run the rest). Not reentrant: one pass at a time, from one thread.
typedef void (*moe_task_fn)(void *ctx, int part);
int moe_pool_run(int parts, moe_task_fn fn, void *ctx);

#endif
