#define _GNU_SOURCE
#include "moe_blas.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cpuid.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);
typedef char *(*str_fn)(void);
typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_status = -1;
static char load_error[512];
static sgemm_fn p_sgemm;
static str_fn p_corename, p_config;
static set_threads_fn p_set_threads;
static get_threads_fn p_get_threads;
static const char *core_source = "library";
static char core_requested[32];
static char cpu_features[64];

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/// Reads the CPU's features straight from CPUID, including whether the OS
/// saves the AVX/AVX-512 register state (without it the kernels would fault).
static void detect(int *avx512, int *avx2fma) {
    unsigned int a, b, c, d;
    *avx512 = 0;
    *avx2fma = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return;
    unsigned long long xcr0 = xgetbv0();
    int os_avx = (xcr0 & 0x6) == 0x6;
    int os_avx512 = (xcr0 & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    int avx2 = (b >> 5) & 1;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    *avx2fma = os_avx && avx2 && fma;
    *avx512 = os_avx512 && f && dq && bw && vl && *avx2fma;
}

static void do_load(void) {
    int avx512 = 0, avx2fma = 0;
    detect(&avx512, &avx2fma);
    snprintf(cpu_features, sizeof cpu_features, "%s%s", avx512 ? "avx512 " : "",
             avx2fma ? "avx2 fma" : "");
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user && *user) {
        core_source = "env";
        snprintf(core_requested, sizeof core_requested, "%s", user);
    } else {
        const char *pick = avx512 ? "SKYLAKEX" : (avx2fma ? "HASWELL" : NULL);
        if (pick) {
            setenv("OPENBLAS_CORETYPE", pick, 1);
            core_source = "auto";
            snprintf(core_requested, sizeof core_requested, "%s", pick);
        }
    }
    const char *names[] = {"libopenblas.so.0", "libopenblas.so", NULL};
    void *h = NULL;
    for (int i = 0; names[i] && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        snprintf(load_error, sizeof load_error,
                 "cannot load OpenBLAS (libopenblas.so.0): %s; install libopenblas-dev", dlerror());
        return;
    }
    p_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    p_corename = (str_fn)dlsym(h, "openblas_get_corename");
    p_config = (str_fn)dlsym(h, "openblas_get_config");
    p_set_threads = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
    p_get_threads = (get_threads_fn)dlsym(h, "openblas_get_num_threads");
    if (!p_sgemm || !p_corename || !p_set_threads || !p_get_threads) {
        snprintf(load_error, sizeof load_error, "OpenBLAS lacks an expected symbol (cblas_sgemm, openblas_get_corename, openblas_set_num_threads)");
        return;
    }
    // moerec's own workers split the work (see Parallel.swift); OpenBLAS's threads would
    // also change its results, which depend on its thread count.
    p_set_threads(1);
    load_status = 0;
}

int moe_blas_load(char *err, int errlen) {
    pthread_once(&load_once, do_load);
    if (load_status != 0 && err && errlen > 0) snprintf(err, (size_t)errlen, "%s", load_error);
    return load_status;
}

const char *moe_blas_core_name(void) { return (load_status == 0) ? p_corename() : "unloaded"; }
const char *moe_blas_core_source(void) { return core_source; }
const char *moe_blas_core_requested(void) { return core_requested; }
const char *moe_blas_config(void) { return (load_status == 0 && p_config) ? p_config() : ""; }
const char *moe_cpu_features(void) { return cpu_features; }

int moe_cpu_level(void) {
    static int level = -1;
    if (level < 0) {
        int avx512 = 0, avx2fma = 0;
        detect(&avx512, &avx2fma);
        level = avx512 ? 2 : (avx2fma ? 1 : 0);
    }
    return level;
}
void moe_blas_set_threads(int n) { if (load_status == 0) p_set_threads(n); }
int moe_blas_threads(void) { return (load_status == 0) ? p_get_threads() : 0; }

void moe_sgemm(int transA, int transB, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    p_sgemm(ROW_MAJOR, transA ? TRANS : NO_TRANS, transB ? TRANS : NO_TRANS, M, N, K,
            alpha, A, lda, B, ldb, beta, C, ldc);
}
