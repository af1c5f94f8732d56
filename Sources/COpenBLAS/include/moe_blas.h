#ifndef MOE_BLAS_H
#define MOE_BLAS_H

/// OpenBLAS, loaded at run time so that moerec chooses the kernel core *before*
/// the library's constructor does. Debian's OpenBLAS 0.3.21 does not recognise
/// recent CPUs and falls back to its generic "Prescott" kernels (5-8x slower);
/// linking it normally would fix that choice before `main` runs.

/// Loads the library (idempotent, thread-safe). Returns 0 on success; on
/// failure writes a message into `err`.
int moe_blas_load(char *err, int errlen);

/// The kernel core OpenBLAS reports after loading (e.g. "SkylakeX").
const char *moe_blas_core_name(void);

/// How the core was chosen: "env" (OPENBLAS_CORETYPE set by the user),
/// "auto" (moerec set it from the CPU's features) or "library" (OpenBLAS's own pick).
const char *moe_blas_core_source(void);

/// The value moerec requested for OPENBLAS_CORETYPE ("" when none).
const char *moe_blas_core_requested(void);

/// OpenBLAS's build configuration string.
const char *moe_blas_config(void);

/// CPU features relevant to the kernel choice, as a short string ("avx512 avx2 fma").
const char *moe_cpu_features(void);

/// The vector instruction level the CPU and OS support: 2 AVX-512 (F, DQ, BW, VL)
/// with AVX2 and FMA, 1 AVX2 with FMA, 0 neither. Read once from CPUID.
int moe_cpu_level(void);

void moe_blas_set_threads(int n);
int moe_blas_threads(void);

/// Row-major C = alpha * op(A) * op(B) + beta * C; trans flags are 0 or 1.
void moe_sgemm(int transA, int transB, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc);

#endif
