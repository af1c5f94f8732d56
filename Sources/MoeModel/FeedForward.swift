import MoeKernels

/// The GELU feed-forward network y = gelu(x·W1 + b1)·W2 + b2 on `n` rows, shared by the
/// dense layers and by each expert (an expert is this on its gathered rows).
///
/// Only the pre-activation h (n, F) is cached. The activation is rebuilt from h in
/// backward, a chunk of rows at a time, so the (rows, F) scratch stays small whatever n is.
public struct FeedForward {
    public let c: Int, f: Int
    /// Rows per chunk of the activation scratch: large enough to keep the GEMMs efficient.
    public static let chunkRows = 512

    public init(c: Int, f: Int) { self.c = c; self.f = f }

    /// Caches h (n, F); `act` is scratch of chunkRows·F floats; y (n, C) is written.
    public func forward(y: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>,
                        x: UnsafePointer<Float>, w1: UnsafePointer<Float>, b1: UnsafePointer<Float>,
                        w2: UnsafePointer<Float>, b2: UnsafePointer<Float>, n: Int,
                        dropout: Dropout?, dropoutStart: Int = 0) {
        guard n > 0 else { return }
        Linear.forward(out: h, inp: x, w: w1, bias: b1, n: n, i: c, o: f)
        var r0 = 0
        while r0 < n {
            let rows = min(Self.chunkRows, n - r0)
            Ops.geluForward(out: act, inp: h + r0 * f, count: rows * f)
            dropout?.apply(act, count: rows * f, start: dropoutStart + r0 * f)
            Linear.forward(out: y + r0 * c, inp: act, w: w2, bias: b2, n: rows, i: f, o: c)
            r0 += rows
        }
    }

    /// Gradients of the weights (nil when frozen) and of x (nil when nothing below learns).
    /// `act` and `dh` are scratch of chunkRows·F floats each.
    public func backward(dx: UnsafeMutablePointer<Float>?, dw1: UnsafeMutablePointer<Float>?, db1: UnsafeMutablePointer<Float>?,
                         dw2: UnsafeMutablePointer<Float>?, db2: UnsafeMutablePointer<Float>?,
                         dy: UnsafePointer<Float>, x: UnsafePointer<Float>, h: UnsafePointer<Float>,
                         act: UnsafeMutablePointer<Float>, dh: UnsafeMutablePointer<Float>,
                         w1: UnsafePointer<Float>, w2: UnsafePointer<Float>, n: Int,
                         dropout: Dropout?, dropoutStart: Int = 0) {
        guard n > 0 else { return }
        let needBelow = dw1 != nil || db1 != nil || dx != nil
        var r0 = 0
        while r0 < n {
            let rows = min(Self.chunkRows, n - r0)
            let hc = h + r0 * f, dyc = dy + r0 * c, start = dropoutStart + r0 * f
            if dw2 != nil {
                Ops.geluForward(out: act, inp: hc, count: rows * f)
                dropout?.apply(act, count: rows * f, start: start)
            }
            Linear.backward(dinp: nil, dw: dw2, dbias: db2, dout: dyc, inp: act, w: w2, n: rows, i: f, o: c)
            if needBelow {
                // dAct = dY·W2ᵀ, then through the dropout mask (regenerated) and GELU.
                Gemm.sgemm(transB: true, m: rows, n: f, k: c, a: dyc, lda: c, b: w2, ldb: c, beta: 0, c: dh, ldc: f)
                if let dropout, dropout.isActive {
                    let keep = 1 / (1 - dropout.rate)
                    for i in 0..<(rows * f) {
                        let kept = CounterRng.uniform(key: dropout.key, index: UInt64(start + i)) >= dropout.rate
                        dh[i] = kept ? dh[i] * keep * Ops.geluDerivative(hc[i]) : 0
                    }
                } else {
                    for i in 0..<(rows * f) { dh[i] *= Ops.geluDerivative(hc[i]) }
                }
                Linear.backward(dinp: dx.map { $0 + r0 * c }, dw: dw1, dbias: db1, dout: dh, inp: x + r0 * c, w: w1,
                                n: rows, i: c, o: f)
            }
            r0 += rows
        }
    }
}
