import CKernels
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
    // MARK: Softmax (the attention's causal softmax is a C kernel: moe_causal_softmax)

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
        Parallel.ranges(n, granule: 16) { rows, _ in
            let r0 = rows.lowerBound
            moe_layernorm_forward(out + r0 * c, mean + r0, rstd + r0, inp + r0 * c, weight, bias, rows.count, c, eps)
        }
    }

    /// dinp += …, dweight += Σ x̂·dout, dbias += Σ dout (either may be nil when frozen).
    public static func layerNormBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                         dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                         inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                         mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int) {
        // Part p takes a block of rows for dinp and a block of columns for the parameter
        // gradients, whose sums over rows then run in row order whatever the part count.
        let parts = Parallel.parts
        Parallel.run(parts: parts) { p in
            if let dinp {
                let rows = Parallel.slice(n, part: p, parts: parts, granule: 16)
                if !rows.isEmpty {
                    let r0 = rows.lowerBound
                    moe_layernorm_backward_input(dinp + r0 * c, dout + r0 * c, inp + r0 * c, weight, mean + r0, rstd + r0,
                                                 rows.count, c)
                }
            }
            guard dweight != nil || dbias != nil else { return }
            let cols = Parallel.slice(c, part: p, parts: parts, granule: 16)
            if !cols.isEmpty {
                moe_layernorm_backward_params(dweight, dbias, dout, inp, mean, rstd, n, c, cols.lowerBound, cols.upperBound)
            }
        }
    }

    // MARK: RMSNorm

    /// out = x·rms⁻¹·g per row (ST-MoE's norm); caches rms⁻¹ (N).
    public static func rmsNormForward(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                                      inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                      n: Int, c: Int, eps: Float = 1e-6) {
        Parallel.ranges(n, granule: 16) { rows, _ in
            for r in rows {
                let x = inp + r * c, y = out + r * c
                var ss: Float = 0
                for j in 0..<c { ss += x[j] * x[j] }
                let s = 1 / (ss / Float(c) + eps).squareRoot()
                for j in 0..<c { y[j] = x[j] * s * weight[j] }
                rstd[r] = s
            }
        }
    }

    public static func rmsNormBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                       dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                                       weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int) {
        let parts = Parallel.parts
        Parallel.run(parts: parts) { p in
            if let dinp {
                for r in Parallel.slice(n, part: p, parts: parts, granule: 16) {
                    let x = inp + r * c, dy = dout + r * c, s = rstd[r]
                    var meanDX: Float = 0
                    for j in 0..<c { meanDX += weight[j] * dy[j] * x[j] * s }
                    meanDX /= Float(c)
                    for j in 0..<c {
                        let xhat = x[j] * s
                        dinp[r * c + j] += s * (weight[j] * dy[j] - xhat * meanDX)
                    }
                }
            }
            guard let dweight else { return }
            let cols = Parallel.slice(c, part: p, parts: parts, granule: 16)
            for r in 0..<n {
                let x = inp + r * c, dy = dout + r * c, s = rstd[r]
                for j in cols { dweight[j] += x[j] * s * dy[j] }
            }
        }
    }

    // MARK: GELU (tanh approximation, as GPT-2)

    /// gelu(x) = x·σ(2u), u = √(2/π)(x + 0.044715x³) — the tanh form, 0.5(1 + tanh u) = σ(2u).
    /// Scalar entry points run the same vector kernel as the buffers do.
    public static func gelu(_ x: Float) -> Float {
        var x = x, y: Float = 0
        moe_gelu_forward(&y, &x, 1)
        return y
    }

    public static func geluDerivative(_ x: Float) -> Float {
        var x = x, d: Float = 1
        moe_gelu_backward(&d, &x, 1)
        return d
    }

    /// out = gelu(inp)
    @inline(__always)
    public static func geluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
        moe_gelu_forward(out, inp, count)
    }

    /// d *= gelu'(inp)
    @inline(__always)
    public static func geluBackward(_ d: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
        moe_gelu_backward(d, inp, count)
    }

    // MARK: Cross-entropy

    /// Mean cross-entropy over rows whose target is ≥ 0, computed and differentiated in one
    /// pass: `logits` (rows, V) is overwritten with d(loss·scale)/d(logits) when `backward`.
    /// Returns (Σ loss, counted rows, correct argmax predictions).
    @discardableResult
    public static func crossEntropy(logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>,
                                    rows: Int, v: Int, gradScale: Float, backward: Bool,
                                    scratch: UnsafeMutablePointer<Float>)
        -> (lossSum: Double, count: Int, correct: Int) {
        // Rows run in parallel, each leaving its loss and hit in `scratch` (2·rows floats);
        // the losses are then summed in row order, whatever the split.
        Parallel.ranges(rows, granule: 16) { r, _ in
            for row in r {
                let (loss, hit) = crossEntropyRow(logits + row * v, target: Int(targets[row]), v: v,
                                                  gradScale: gradScale, backward: backward)
                scratch[2 * row] = loss
                scratch[2 * row + 1] = hit ? 1 : 0
            }
        }
        var lossSum = 0.0, count = 0, correct = 0
        for row in 0..<rows where targets[row] >= 0 {
            count += 1
            lossSum += Double(scratch[2 * row])
            if scratch[2 * row + 1] != 0 { correct += 1 }
        }
        return (lossSum, count, correct)
    }

    /// One row of `crossEntropy`: its loss and whether the argmax hit the target; a row
    /// with a negative target gets a zero gradient and no loss.
    @inline(__always)
    static func crossEntropyRow(_ x: UnsafeMutablePointer<Float>, target t: Int, v: Int,
                                gradScale: Float, backward: Bool) -> (Float, Bool) {
        if t < 0 {
            if backward { x.update(repeating: 0, count: v) }
            return (0, false)
        }
        var loss: Float = 0
        let hit = moe_cross_entropy_row(x, v, t, gradScale, backward ? 1 : 0, &loss)
        return (loss, hit != 0)
    }

    // MARK: Small helpers

    @inline(__always)
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    /// sums[j] += Σ_r x[r·ld + j] for j in `cols`, rows summed in order.
    @inline(__always)
    public static func addColumnSums(_ sums: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                     rows: Int, ld: Int, cols: Range<Int>) {
        guard !cols.isEmpty else { return }
        for r in 0..<rows {
            let row = x + r * ld
            for j in cols { sums[j] += row[j] }
        }
    }
}

/// Element-wise passes over whole buffers, split over the workers.
public enum ParallelOps {
    public static func fill(_ y: UnsafeMutablePointer<Float>, count: Int, value: Float = 0) {
        Parallel.ranges(count, granule: 4096) { r, _ in (y + r.lowerBound).update(repeating: value, count: r.count) }
    }

    public static func copy(_ y: UnsafeMutablePointer<Float>, from x: UnsafePointer<Float>, count: Int) {
        Parallel.ranges(count, granule: 4096) { r, _ in (y + r.lowerBound).update(from: x + r.lowerBound, count: r.count) }
    }

    /// z = x + y (z may alias either).
    public static func sum(_ z: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
        Parallel.ranges(count, granule: 4096) { r, _ in
            for i in r { z[i] = x[i] + y[i] }
        }
    }
}
