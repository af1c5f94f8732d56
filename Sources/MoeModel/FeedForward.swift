import MoeKernels

/// The GELU feed-forward network y = gelu(x·W1 + b1)·W2 + b2 on `n` rows, shared by the
/// dense layers and by each expert (an expert is this on its gathered rows).
public struct FeedForward {
    public let c: Int, f: Int

    public init(c: Int, f: Int) { self.c = c; self.f = f }

    /// Caches the pre-activation h (n, F). `act` (n, F) is scratch that ends holding the
    /// (dropped-out) activation; y (n, C) is written.
    public func forward(y: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>,
                        x: UnsafePointer<Float>, w1: UnsafePointer<Float>, b1: UnsafePointer<Float>,
                        w2: UnsafePointer<Float>, b2: UnsafePointer<Float>, n: Int,
                        dropout: Dropout?, dropoutStart: Int = 0) {
        guard n > 0 else { return }
        Linear.forward(out: h, inp: x, w: w1, bias: b1, n: n, i: c, o: f)
        Ops.geluForward(out: act, inp: h, count: n * f)
        dropout?.apply(act, count: n * f, start: dropoutStart)
        Linear.forward(out: y, inp: act, w: w2, bias: b2, n: n, i: f, o: c)
    }

    /// Gradients of the weights (nil when frozen) and of x (nil when nothing below learns).
    /// `act` and `dh` are (n, F) scratch; `act` is recomputed from the cached h.
    public func backward(dx: UnsafeMutablePointer<Float>?, dw1: UnsafeMutablePointer<Float>?, db1: UnsafeMutablePointer<Float>?,
                         dw2: UnsafeMutablePointer<Float>?, db2: UnsafeMutablePointer<Float>?,
                         dy: UnsafePointer<Float>, x: UnsafePointer<Float>, h: UnsafePointer<Float>,
                         act: UnsafeMutablePointer<Float>, dh: UnsafeMutablePointer<Float>,
                         w1: UnsafePointer<Float>, w2: UnsafePointer<Float>, n: Int,
                         dropout: Dropout?, dropoutStart: Int = 0) {
        guard n > 0 else { return }
        if dw2 != nil {
            Ops.geluForward(out: act, inp: h, count: n * f)
            dropout?.apply(act, count: n * f, start: dropoutStart)
        }
        // dAct = dY·W2ᵀ, written fresh into dh.
        Gemm.sgemm(transB: true, m: n, n: f, k: c, a: dy, lda: c, b: w2, ldb: c, beta: 0, c: dh, ldc: f)
        Linear.backward(dinp: nil, dw: dw2, dbias: db2, dout: dy, inp: act, w: w2, n: n, i: f, o: c)
        if dw1 == nil && db1 == nil && dx == nil { return }
        // Through the dropout mask (same mask as forward) and GELU, in place.
        if let dropout, dropout.isActive {
            let keep = 1 / (1 - dropout.rate)
            for i in 0..<(n * f) {
                let kept = CounterRng.uniform(key: dropout.key, index: UInt64(dropoutStart + i)) >= dropout.rate
                dh[i] = kept ? dh[i] * keep * Ops.geluDerivative(h[i]) : 0
            }
        } else {
            for i in 0..<(n * f) { dh[i] *= Ops.geluDerivative(h[i]) }
        }
        Linear.backward(dinp: dx, dw: dw1, dbias: db1, dout: dh, inp: x, w: w1, n: n, i: c, o: f)
    }
}
