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
    /// Blocks of `Gemm.block` rows are spread over (at most chunkRows / block) workers,
    /// each activating its block in its own part of `act`.
    public func forward(y: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>,
                        x: UnsafePointer<Float>, w1: UnsafePointer<Float>, b1: UnsafePointer<Float>,
                        w2: UnsafePointer<Float>, b2: UnsafePointer<Float>, n: Int,
                        dropout: Dropout?, dropoutStart: Int = 0) {
        guard n > 0 else { return }
        let parts = min(Parallel.parts, Self.scratchParts)
        Parallel.run(parts: parts) { p in
            for lo in Parallel.blocks(n, block: Gemm.block, part: p, parts: parts) {
                forwardBlock(y: y, h: h, act: act + p * Gemm.block * f, x: x, w1: w1, b1: b1, w2: w2, b2: b2,
                             rows: lo..<min(n, lo + Gemm.block), dropout: dropout, dropoutStart: dropoutStart)
            }
        }
    }

    /// How many workers can share the chunkRows·F activation scratch, a block each.
    public static var scratchParts: Int { max(1, chunkRows / Gemm.block) }

    /// One block of rows: h = x·W1 + b1 (cached), act = gelu(h) through dropout, y = act·W2 + b2.
    /// `act` holds the block's activation; y, h and x are the whole layer's buffers.
    @inline(__always)
    public func forwardBlock(y: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>,
                             x: UnsafePointer<Float>, w1: UnsafePointer<Float>, b1: UnsafePointer<Float>,
                             w2: UnsafePointer<Float>, b2: UnsafePointer<Float>, rows: Range<Int>,
                             dropout: Dropout?, dropoutStart: Int) {
        let lo = rows.lowerBound, n = rows.count
        Linear.forward(out: h + lo * f, inp: x + lo * c, w: w1, bias: b1, n: n, i: c, o: f)
        Ops.geluForward(out: act, inp: h + lo * f, count: n * f)
        dropout?.apply(act, count: n * f, start: dropoutStart + lo * f)
        Linear.forward(out: y + lo * c, inp: act, w: w2, bias: b2, n: n, i: f, o: c)
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
        let parts = Parallel.parts
        var r0 = 0
        while r0 < n {
            let rows = min(Self.chunkRows, n - r0)
            let hc = h + r0 * f, dyc = dy + r0 * c, xc = x + r0 * c, start = dropoutStart + r0 * f
            // Part p owns a run of blocks of the F hidden units: their columns of the
            // activation and of dh, rows of dW2 and columns of dW1 — every sum over the
            // chunk's rows stays whole — and a slice of b2's entries.
            Parallel.run(parts: parts) { p in
                if let db2 { Ops.addColumnSums(db2, dyc, rows: rows, ld: c, cols: Parallel.slice(c, part: p, parts: parts, granule: 16)) }
                for f0 in Parallel.blocks(f, block: Gemm.block, part: p, parts: parts) {
                    let fr = f0..<min(f, f0 + Gemm.block), fw = fr.count
                    if let dw2 {
                        for r in 0..<rows {
                            let a = act + r * f, hr = hc + r * f
                            Ops.geluForward(out: a + f0, inp: hr + f0, count: fw)
                            dropout?.apply(a + f0, count: fw, start: start + r * f + f0)
                        }
                        Gemm.sgemm(transA: true, m: fw, n: c, k: rows, a: act + f0, lda: f, b: dyc, ldb: c,
                                   beta: 1, c: dw2 + f0 * c, ldc: c)
                    }
                    guard needBelow else { continue }
                    // dAct = dY·W2ᵀ
                    Gemm.sgemm(transB: true, m: rows, n: fw, k: c, a: dyc, lda: c, b: w2 + f0 * c, ldb: c,
                               beta: 0, c: dh + f0, ldc: f)
                    for r in 0..<rows {
                        let d = dh + r * f, hr = hc + r * f
                        // Through the regenerated dropout mask, then GELU.
                        dropout?.apply(d + f0, count: fw, start: start + r * f + f0)
                        Ops.geluBackward(d + f0, inp: hr + f0, count: fw)
                    }
                    if let dw1 {
                        Gemm.sgemm(transA: true, m: c, n: fw, k: rows, a: xc, lda: c, b: dh + f0, ldb: f,
                                   beta: 1, c: dw1 + f0, ldc: f)
                    }
                    if let db1 { Ops.addColumnSums(db1, dh, rows: rows, ld: f, cols: fr) }
                }
            }
            if let dx {
                // dX = dAct·W1ᵀ sums over all F: split by blocks of rows instead.
                Parallel.forEachBlock(rows, block: Gemm.block) { r in
                    Gemm.sgemm(transB: true, m: r.count, n: c, k: f, a: dh + r.lowerBound * f, lda: f, b: w1, ldb: f,
                               beta: 1, c: dx + (r0 + r.lowerBound) * c, ldc: c)
                }
            }
            r0 += rows
        }
    }
}
