import CKernels
import MoeKernels

/// Causal multi-head self-attention core (the QKV and output projections are `Linear`s
/// in the block). Per (b, h) it runs two GEMMs on strided views of qkv, so no head is
/// ever copied out. The (T, T) probabilities are not kept: backward recomputes them from
/// Q and K (one GEMM and a softmax per head), which costs a few percent of a step and
/// saves B·H·T·T floats per layer.
public enum Attention {
    /// qkv (B, T, 3C) → y (B, T, C). `att` holds `scratchParts` (T, T) blocks: sequences
    /// are split over up to that many workers, each with its own block.
    public static func forward(y: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, scratchParts: Int,
                               qkv: UnsafePointer<Float>, b B: Int, t T: Int, c C: Int, h H: Int) {
        let hs = C / H
        let scale = 1 / Float(hs).squareRoot()
        Parallel.ranges(B, maxParts: scratchParts) { batches, part in
            let p = att + part * T * T
            for b in batches {
                for h in 0..<H {
                    let q = qkv + b * T * 3 * C + h * hs
                    let k = q + C, v = q + 2 * C
                    probabilities(p, q: q, k: k, t: T, c: C, hs: hs, scale: scale)
                    Gemm.sgemm(m: T, n: hs, k: T, a: p, lda: T, b: v, ldb: 3 * C, beta: 0,
                               c: y + b * T * C + h * hs, ldc: C)
                }
            }
        }
    }

    /// P = causal softmax(s·Q·Kᵀ) for one head.
    @inline(__always)
    static func probabilities(_ p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                              t T: Int, c C: Int, hs: Int, scale: Float) {
        Gemm.sgemm(transB: true, m: T, n: T, k: hs, alpha: scale, a: q, lda: 3 * C, b: k, ldb: 3 * C, beta: 0, c: p, ldc: T)
        causalSoftmax(p, T)
    }

    /// Row t attends to positions 0...t; the masked upper triangle is stored as exact zeros
    /// so the P·V GEMM and the backward GEMMs can run over full rows.
    @inline(__always)
    static func causalSoftmax(_ p: UnsafeMutablePointer<Float>, _ T: Int) {
        moe_causal_softmax(p, T)
    }

    /// dqkv (B, T, 3C) is *written* (each (b, h) slice is disjoint), from dy (B, T, C).
    /// `att` and `scratch` hold `scratchParts` (T, T) blocks each.
    public static func backward(dqkv: UnsafeMutablePointer<Float>, scratch allScratch: UnsafeMutablePointer<Float>,
                                dy: UnsafePointer<Float>, att: UnsafeMutablePointer<Float>, scratchParts: Int,
                                qkv: UnsafePointer<Float>, b B: Int, t T: Int, c C: Int, h H: Int) {
        let hs = C / H
        let scale = 1 / Float(hs).squareRoot()
        Parallel.ranges(B, maxParts: scratchParts) { batches, part in
        let p = att + part * T * T, scratch = allScratch + part * T * T
        for b in batches {
            for h in 0..<H {
                let off = b * T * 3 * C + h * hs
                let q = qkv + off, k = q + C, v = q + 2 * C
                let dq = dqkv + off, dk = dq + C, dv = dq + 2 * C
                probabilities(p, q: q, k: k, t: T, c: C, hs: hs, scale: scale)
                let dyh = dy + b * T * C + h * hs
                // dP = dY·Vᵀ ; dV = Pᵀ·dY
                Gemm.sgemm(transB: true, m: T, n: T, k: hs, a: dyh, lda: C, b: v, ldb: 3 * C, beta: 0, c: scratch, ldc: T)
                Gemm.sgemm(transA: true, m: T, n: hs, k: T, a: p, lda: T, b: dyh, ldb: C, beta: 0, c: dv, ldc: 3 * C)
                // dS = P ⊙ (dP − Σ_j dP·P), zero above the diagonal because P is.
                moe_causal_softmax_backward(scratch, p, T)
                // dQ = s·dS·K ; dK = s·dSᵀ·Q
                Gemm.sgemm(m: T, n: hs, k: T, alpha: scale, a: scratch, lda: T, b: k, ldb: 3 * C, beta: 0, c: dq, ldc: 3 * C)
                Gemm.sgemm(transA: true, m: T, n: hs, k: T, alpha: scale, a: scratch, lda: T, b: q, ldb: 3 * C,
                           beta: 0, c: dk, ldc: 3 * C)
            }
        }
        }
    }
}
