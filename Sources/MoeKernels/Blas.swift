import CKernels
import COpenBLAS
import MoeErrors

/// The OpenBLAS library as moerec loads it: at run time, after choosing the kernel
/// core from the CPU's features (see moe_blas.c for why it cannot be linked normally).
public enum Blas {
    /// OpenBLAS is missing or unusable on this machine: not the user's input.
    public struct LoadError: MoeError {
        public let description: String
        public var exitMeaning: ExitMeaning { .checkFailed }
    }

    /// Loads OpenBLAS once; every entry point below calls it, so callers never need to.
    public static func load() throws {
        var buffer = [CChar](repeating: 0, count: 512)
        if moe_blas_load(&buffer, Int32(buffer.count)) != 0 {
            throw LoadError(description: String(cString: buffer))
        }
    }

    static let loaded: Void = {
        do { try load() } catch { fatalError("\(error)") }
    }()

    /// The kernel core OpenBLAS runs on (e.g. "SkylakeX"); recorded with every run.
    public static var coreName: String { _ = loaded; return String(cString: moe_blas_core_name()) }
    /// "auto" when moerec picked the core from CPUID, "env" when the user set
    /// OPENBLAS_CORETYPE, "library" when OpenBLAS chose by itself.
    public static var coreSource: String { _ = loaded; return String(cString: moe_blas_core_source()) }
    /// The instruction set the element-wise kernels run on ("avx512", "avx2" or "sse2").
    public static var vectorKernels: String { String(cString: moe_kernels_name()) }
    public static var cpuFeatures: String { _ = loaded; return String(cString: moe_cpu_features()) }
    public static var config: String { _ = loaded; return String(cString: moe_blas_config()) }

    /// The engine's thread count: `Parallel.workers`, each calling OpenBLAS
    /// single-threaded on its own part of the work (see `Parallel`).
    public static var threads: Int {
        get { Parallel.workers }
        set { Parallel.workers = max(1, newValue) }
    }

    /// OpenBLAS's own thread count (1 unless set here; the engine keeps it at 1).
    public static var libraryThreads: Int {
        get { _ = loaded; return Int(moe_blas_threads()) }
        set { _ = loaded; moe_blas_set_threads(Int32(max(1, newValue))) }
    }
}

/// GEMM over row-major fp32 matrices. `sgemm` calls OpenBLAS; `sgemmReference` is the
/// plain triple loop (accumulated in Double) the tests hold it against.
public enum Gemm {
    /// C (M,N) = alpha · op(A) · op(B) + beta · C, op(X) = X or Xᵀ.
    /// A is (M,K) or, transposed, stored (K,M); B is (K,N) or stored (N,K).
    @inline(__always)
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            // BLAS would still scale C by beta; keep that contract for empty reductions.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        _ = Blas.loaded
        moe_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha,
                  a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `sgemm` cut into fixed blocks of `block` rows of C (or columns, when M is small),
    /// never along K, and the blocks spread over the workers. The blocks — and so every
    /// element of C — are the same whatever the worker count.
    public static func sgemmParallel(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                                     alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                                     b: UnsafePointer<Float>, ldb: Int,
                                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m >= n || m > block {
            Parallel.forEachBlock(m, block: block) { r in
                sgemm(transA: transA, transB: transB, m: r.count, n: n, k: k, alpha: alpha,
                      a: transA ? a + r.lowerBound : a + r.lowerBound * lda, lda: lda, b: b, ldb: ldb,
                      beta: beta, c: c + r.lowerBound * ldc, ldc: ldc)
            }
        } else {
            Parallel.forEachBlock(n, block: block) { r in
                sgemm(transA: transA, transB: transB, m: m, n: r.count, k: k, alpha: alpha, a: a, lda: lda,
                      b: transB ? b + r.lowerBound * ldb : b + r.lowerBound, ldb: ldb,
                      beta: beta, c: c + r.lowerBound, ldc: ldc)
            }
        }
    }

    /// The block every parallel GEMM is cut into: rows of C, or columns of a weight
    /// gradient. Part of the numerics: changing it changes results.
    public static let block = 256

    public static func sgemmReference(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                                      alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                                      b: UnsafePointer<Float>, ldb: Int,
                                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k {
                    let x = transA ? a[p * lda + i] : a[i * lda + p]
                    let y = transB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += Double(x) * Double(y)
                }
                let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                c[i * ldc + j] = Float(Double(alpha) * sum + old)
            }
        }
    }
}

/// A linear layer y = x·W + b with W stored (I, O): the shapes every layer of the model uses.
public enum Linear {
    /// out (N,O) = inp (N,I) · w (I,O) + bias (O)
    public static func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                               w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               n: Int, i: Int, o: Int) {
        Parallel.forEachBlock(n, block: Gemm.block) { rows in
            let out = out + rows.lowerBound * o
            if let bias {
                for r in 0..<rows.count { (out + r * o).update(from: bias, count: o) }
            }
            Gemm.sgemm(m: rows.count, n: o, k: i, a: inp + rows.lowerBound * i, lda: i, b: w, ldb: o,
                       beta: bias == nil ? 0 : 1, c: out, ldc: o)
        }
    }

    /// Accumulates dinp (N,I) += dout·wᵀ, dw (I,O) += inpᵀ·dout, dbias += Σ_rows dout.
    /// A nil gradient pointer skips that product (frozen weights, or no layer below to feed).
    public static func backward(dinp: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?,
                                dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                inp: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                n: Int, i: Int, o: Int) {
        // Work items: blocks of dw's rows, then blocks of dinp's rows, each one fixed sgemm
        // call, spread over the parts by cost (the two products cost the same, so with two
        // workers dw and dinp run side by side). No sum over the N rows is ever split.
        let parts = Parallel.parts, block = Gemm.block
        let wBlocks = dw == nil ? 0 : (i + block - 1) / block
        let rowBlocks = dinp == nil ? 0 : (n + block - 1) / block
        Parallel.run(parts: parts) { p in
            Parallel.assigned(wBlocks + rowBlocks, part: p, parts: parts, cost: { item in
                item < wBlocks ? min(block, i - item * block) * o * n : min(block, n - (item - wBlocks) * block) * i * o
            }) { item in
                if item < wBlocks, let dw {
                    let lo = item * block
                    Gemm.sgemm(transA: true, m: min(block, i - lo), n: o, k: n, a: inp + lo, lda: i, b: dout, ldb: o,
                               beta: 1, c: dw + lo * o, ldc: o)
                } else if let dinp {
                    let lo = (item - wBlocks) * block
                    Gemm.sgemm(transB: true, m: min(block, n - lo), n: i, k: o, a: dout + lo * o, lda: o, b: w, ldb: o,
                               beta: 1, c: dinp + lo * i, ldc: i)
                }
            }
            if let dbias {
                Ops.addColumnSums(dbias, dout, rows: n, ld: o, cols: Parallel.slice(o, part: p, parts: parts, granule: 16))
            }
        }
    }
}
