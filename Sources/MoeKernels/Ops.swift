#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

// Shape legend for the whole engine: B batch, T time, C channels, H heads, E experts,
// K top-k, F d_ff, V vocab, N = B·T tokens.

/// Row-wise numerics shared by the layers. Each forward writes exactly what its
/// backward reads; every backward accumulates (`+=`) into its gradients.
public enum Ops {
    // MARK: Softmax

    /// Softmax of each of `rows` rows of length `cols`, in place-safe (out may equal inp).
    public static func softmaxRows(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows {
            let x = inp + r * cols, y = out + r * cols
            var m = -Float.infinity
            for j in 0..<cols where x[j] > m { m = x[j] }
            var s: Float = 0
            for j in 0..<cols { let e = FastMath.exp(x[j] - m); y[j] = e; s += e }
            let inv = 1 / s
            for j in 0..<cols { y[j] *= inv }
        }
    }

    /// log Σ exp over one row, stable.
    @inline(__always)
    public static func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = -Float.infinity
        for j in 0..<n where x[j] > m { m = x[j] }
        var s: Float = 0
        for j in 0..<n { s += FastMath.exp(x[j] - m) }
        return m + logf(s)
    }

    // MARK: Top-k

    /// Indices of the k largest values of `x` (length n) in descending order; ties go to
    /// the lower index so routing never depends on anything but the values.
    @inline(__always)
    public static func topK(_ x: UnsafePointer<Float>, n: Int, k: Int, into idx: UnsafeMutablePointer<Int32>) {
        for slot in 0..<k {
            var best = -1
            var bestValue = -Float.infinity
            for j in 0..<n {
                var taken = false
                for s in 0..<slot where Int(idx[s]) == j { taken = true; break }
                if taken { continue }
                if best < 0 || x[j] > bestValue { best = j; bestValue = x[j] }
            }
            idx[slot] = Int32(best)
        }
    }

    // MARK: LayerNorm

    /// out = (x − μ)·σ⁻¹·g + b per row of C; caches μ and σ⁻¹ (N) for backward.
    public static func layerNormForward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                        rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                                        n: Int, c: Int, eps: Float = 1e-5) {
        let invC = 1 / Float(c)
        for r in 0..<n {
            let x = inp + r * c, y = out + r * c
            var m: Float = 0
            for j in 0..<c { m += x[j] }
            m *= invC
            var v: Float = 0
            for j in 0..<c { let d = x[j] - m; v += d * d }
            v *= invC
            let s = 1 / (v + eps).squareRoot()
            for j in 0..<c { y[j] = (x[j] - m) * s * weight[j] + bias[j] }
            mean[r] = m
            rstd[r] = s
        }
    }

    /// dinp += …, dweight += Σ x̂·dout, dbias += Σ dout (either may be nil when frozen).
    public static func layerNormBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                         dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                         inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                         mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int) {
        let invC = 1 / Float(c)
        for r in 0..<n {
            let x = inp + r * c, dy = dout + r * c
            let m = mean[r], s = rstd[r]
            var meanD: Float = 0, meanDX: Float = 0
            for j in 0..<c {
                let xhat = (x[j] - m) * s
                let dn = weight[j] * dy[j]
                meanD += dn
                meanDX += dn * xhat
            }
            meanD *= invC
            meanDX *= invC
            for j in 0..<c {
                let xhat = (x[j] - m) * s
                if let dbias { dbias[j] += dy[j] }
                if let dweight { dweight[j] += xhat * dy[j] }
                if let dinp { dinp[r * c + j] += s * (weight[j] * dy[j] - meanD - xhat * meanDX) }
            }
        }
    }

    // MARK: RMSNorm

    /// out = x·rms⁻¹·g per row (ST-MoE's norm); caches rms⁻¹ (N).
    public static func rmsNormForward(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                                      inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                      n: Int, c: Int, eps: Float = 1e-6) {
        for r in 0..<n {
            let x = inp + r * c, y = out + r * c
            var ss: Float = 0
            for j in 0..<c { ss += x[j] * x[j] }
            let s = 1 / (ss / Float(c) + eps).squareRoot()
            for j in 0..<c { y[j] = x[j] * s * weight[j] }
            rstd[r] = s
        }
    }

    public static func rmsNormBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                       dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                                       weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int) {
        for r in 0..<n {
            let x = inp + r * c, dy = dout + r * c, s = rstd[r]
            var meanDX: Float = 0
            for j in 0..<c { meanDX += weight[j] * dy[j] * x[j] * s }
            meanDX /= Float(c)
            for j in 0..<c {
                let xhat = x[j] * s
                if let dweight { dweight[j] += xhat * dy[j] }
                if let dinp { dinp[r * c + j] += s * (weight[j] * dy[j] - xhat * meanDX) }
            }
        }
    }

    // MARK: GELU (tanh approximation, as GPT-2)

    /// √(2/π)
    @usableFromInline static let geluScale: Float = 0.797_884_56

    @inlinable @inline(__always)
    public static func gelu(_ x: Float) -> Float {
        0.5 * x * (1 + FastMath.tanh(geluScale * (x + 0.044715 * x * x * x)))
    }

    @inlinable @inline(__always)
    public static func geluDerivative(_ x: Float) -> Float {
        let cube = 0.044715 * x * x * x
        let t = FastMath.tanh(geluScale * (x + cube))
        let sech2 = 1 - t * t
        return 0.5 * (1 + t) + 0.5 * x * sech2 * geluScale * (1 + 3 * 0.044715 * x * x)
    }

    public static func geluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = gelu(inp[i]) }
    }

    /// dinp += gelu'(inp)·dout
    public static func geluBackward(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                    dout: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { dinp[i] += geluDerivative(inp[i]) * dout[i] }
    }

    // MARK: Cross-entropy

    /// Mean cross-entropy over rows whose target is ≥ 0, computed and differentiated in one
    /// pass: `logits` (rows, V) is overwritten with d(loss·scale)/d(logits) when `backward`.
    /// Returns (Σ loss, counted rows, correct argmax predictions).
    @discardableResult
    public static func crossEntropy(logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>,
                                    rows: Int, v: Int, gradScale: Float, backward: Bool)
        -> (lossSum: Double, count: Int, correct: Int) {
        var lossSum = 0.0, count = 0, correct = 0
        for r in 0..<rows {
            let x = logits + r * v
            let t = Int(targets[r])
            if t < 0 {
                if backward { for j in 0..<v { x[j] = 0 } }
                continue
            }
            var m = -Float.infinity, arg = 0
            for j in 0..<v where x[j] > m { m = x[j]; arg = j }
            let target = x[t]
            if arg == t { correct += 1 }
            count += 1
            var s: Float = 0
            if backward {
                // Keep e^(x−m) in place, then scale: one exponential per logit.
                for j in 0..<v { let e = FastMath.exp(x[j] - m); x[j] = e; s += e }
                let k = gradScale / s
                for j in 0..<v { x[j] *= k }
                x[t] -= gradScale
            } else {
                for j in 0..<v { s += FastMath.exp(x[j] - m) }
            }
            lossSum += Double(m + logf(s) - target)
        }
        return (lossSum, count, correct)
    }

    // MARK: Small helpers

    @inline(__always)
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    @inline(__always)
    public static func zero(_ y: UnsafeMutablePointer<Float>, count: Int) {
        y.update(repeating: 0, count: count)
    }
}
