import MoeKernels
#if canImport(Glibc)
import Glibc
#endif

/// What one MoE layer's forward pass measured; returned as a value, no global state.
public struct RouterStats: Sendable, Equatable {
    /// L_B = E·Σᵢ fᵢ·Pᵢ before its coefficient (1.0 at perfect balance).
    public var auxLoss: Float = 0
    /// L_z = (1/N)·Σₜ (log Σⱼ exp xₜⱼ)² before its coefficient.
    public var zLoss: Float = 0
    /// Share of the N·K top-k assignments that found their expert full.
    public var droppedFraction: Float = 0
    /// Mean entropy (nats) of the router distribution per token.
    public var entropy: Float = 0
    public var tokens = 0
    public var keptAssignments = 0
    public init() {}
}

/// The softmax router, run in fp32: routing decisions are argmaxes over small logit gaps,
/// and reduced precision there flips choices and destabilises training (Switch, §2.4).
public enum Router {
    /// probs (N, E) = softmax(x·Wr); lse (N) kept for the z-loss backward; top-k indices
    /// (N, K) by descending probability, gates (N, K): the raw probability for top-1 (Switch:
    /// renormalising a single gate would make it 1 and cut the router off from the task
    /// loss) and renormalised over the chosen experts for top-k > 1 (ST-MoE).
    public static func forward(probs: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
                               idx: UnsafeMutablePointer<Int32>, gates: UnsafeMutablePointer<Float>,
                               x: UnsafePointer<Float>, wr: UnsafePointer<Float>, n: Int, c: Int, e: Int, k: Int) {
        Gemm.sgemmParallel(m: n, n: e, k: c, a: x, lda: c, b: wr, ldb: e, beta: 0, c: probs, ldc: e)
        Parallel.ranges(n, granule: 16) { tokens, _ in
        for t in tokens {
            let row = probs + t * e
            lse[t] = Ops.logSumExp(row, e)
            let l = lse[t]
            for j in 0..<e { row[j] = expf(row[j] - l) }
            let chosen = idx + t * k, g = gates + t * k
            Ops.topK(row, n: e, k: k, into: chosen)
            if k == 1 {
                g[0] = row[Int(chosen[0])]
            } else {
                var s: Float = 0
                for slot in 0..<k { s += row[Int(chosen[slot])] }
                for slot in 0..<k { g[slot] = row[Int(chosen[slot])] / s }
            }
        }
        }
    }

    /// Router logits gradient dlogits (N, E), written, from the gate gradients dgates (N, K)
    /// and the two auxiliary losses (each gradient cites its formula below).
    /// `firstChoiceFraction` (E) is fᵢ; `valid` (N) excludes padding (nil: all tokens).
    public static func backward(dlogits: UnsafeMutablePointer<Float>, dgates: UnsafePointer<Float>,
                                probs: UnsafePointer<Float>, lse: UnsafePointer<Float>,
                                idx: UnsafePointer<Int32>, firstChoiceFraction: UnsafePointer<Float>,
                                valid: UnsafePointer<Float>?, validCount: Int,
                                n: Int, e: Int, k: Int, auxCoef: Float, zCoef: Float) {
        let inv = validCount > 0 ? 1 / Float(validCount) : 0
        Parallel.ranges(n, granule: 16) { tokens, _ in
        for t in tokens {
            let d = dlogits + t * e, p = probs + t * e
            if let valid, valid[t] == 0 { d.update(repeating: 0, count: e); continue }
            // ∂L/∂p from the gates.
            for j in 0..<e { d[j] = 0 }
            let chosen = idx + t * k, dg = dgates + t * k
            if k == 1 {
                d[Int(chosen[0])] += dg[0]
            } else {
                // g_k = p_k / S, S = Σ_sel p ⇒ ∂L/∂p_j = dg_j/S − Σ_k dg_k·p_k/S² for chosen j.
                var s: Float = 0, dot: Float = 0
                for slot in 0..<k { let pj = p[Int(chosen[slot])]; s += pj; dot += dg[slot] * pj }
                for slot in 0..<k { d[Int(chosen[slot])] += dg[slot] / s - dot / (s * s) }
            }
            // Load balancing, L_B = E·Σᵢ fᵢ·Pᵢ with Pᵢ = (1/N)Σₜ pₜᵢ: ∂/∂pₜᵢ = c_B·E·fᵢ/N (f is a count, no gradient).
            if auxCoef > 0 {
                for j in 0..<e { d[j] += auxCoef * Float(e) * firstChoiceFraction[j] * inv }
            }
            // Softmax backward: ∂L/∂x = p ⊙ (∂L/∂p − Σ p·∂L/∂p).
            var pd: Float = 0
            for j in 0..<e { pd += p[j] * d[j] }
            for j in 0..<e { d[j] = p[j] * (d[j] - pd) }
            // Router z-loss, L_z = (1/N)Σₜ lseₜ²: ∂/∂xₜⱼ = c_z·(2/N)·lseₜ·pₜⱼ.
            if zCoef > 0 {
                let s = zCoef * 2 * inv * lse[t]
                for j in 0..<e { d[j] += s * p[j] }
            }
        }
        }
    }

    /// The two auxiliary loss values and routing statistics over valid tokens. fᵢ counts
    /// first choices before capacity dropping (as Switch and the HF implementation do).
    public static func losses(probs: UnsafePointer<Float>, lse: UnsafePointer<Float>, idx: UnsafePointer<Int32>,
                              valid: UnsafePointer<Float>?, n: Int, e: Int, k: Int,
                              firstChoiceFraction: UnsafeMutablePointer<Float>,
                              meanProb: UnsafeMutablePointer<Float>) -> RouterStats {
        var stats = RouterStats()
        for j in 0..<e { firstChoiceFraction[j] = 0; meanProb[j] = 0 }
        var count = 0
        var z = 0.0, entropy = 0.0
        for t in 0..<n {
            if let valid, valid[t] == 0 { continue }
            count += 1
            let p = probs + t * e
            firstChoiceFraction[Int(idx[t * k])] += 1
            var h = 0.0
            for j in 0..<e {
                meanProb[j] += p[j]
                if p[j] > 0 { h -= Double(p[j]) * Double(logf(p[j])) }
            }
            entropy += h
            z += Double(lse[t]) * Double(lse[t])
        }
        stats.tokens = count
        guard count > 0 else { return stats }
        let inv = 1 / Float(count)
        var aux: Float = 0
        for j in 0..<e {
            firstChoiceFraction[j] *= inv
            meanProb[j] *= inv
            aux += firstChoiceFraction[j] * meanProb[j]
        }
        stats.auxLoss = Float(e) * aux
        stats.zLoss = Float(z / Double(count))
        stats.entropy = Float(entropy / Double(count))
        return stats
    }
}
