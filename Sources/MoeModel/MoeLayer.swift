import MoeKernels

/// What one sparse layer keeps from forward for backward (views into the activation arena).
public struct MoeCache {
    /// (N, E) router probabilities
    public var probs: UnsafeMutablePointer<Float>
    /// (N) log-sum-exp of the router logits
    public var lse: UnsafeMutablePointer<Float>
    /// (N, K) chosen experts
    public var idx: UnsafeMutablePointer<Int32>
    /// (N, K) gate weights
    public var gates: UnsafeMutablePointer<Float>
    /// (N, K) packed row of each assignment, −1 when dropped for capacity
    public var slot: UnsafeMutablePointer<Int32>
    /// (N·K) token of each packed row
    public var rowToken: UnsafeMutablePointer<Int32>
    /// (E + 1) first packed row of each expert
    public var expertStart: UnsafeMutablePointer<Int32>
    /// (E) fᵢ and Pᵢ of the load-balancing loss
    public var firstChoice: UnsafeMutablePointer<Float>
    public var meanProb: UnsafeMutablePointer<Float>
    /// (N·K, C) gathered inputs, (N·K, F) expert pre-activations, (N·K, C) expert outputs
    public var xPacked: UnsafeMutablePointer<Float>
    public var h: UnsafeMutablePointer<Float>
    public var y: UnsafeMutablePointer<Float>

    public init(probs: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>, idx: UnsafeMutablePointer<Int32>,
                gates: UnsafeMutablePointer<Float>, slot: UnsafeMutablePointer<Int32>, rowToken: UnsafeMutablePointer<Int32>,
                expertStart: UnsafeMutablePointer<Int32>, firstChoice: UnsafeMutablePointer<Float>,
                meanProb: UnsafeMutablePointer<Float>, xPacked: UnsafeMutablePointer<Float>,
                h: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>) {
        self.probs = probs; self.lse = lse; self.idx = idx; self.gates = gates; self.slot = slot
        self.rowToken = rowToken; self.expertStart = expertStart; self.firstChoice = firstChoice
        self.meanProb = meanProb; self.xPacked = xPacked; self.h = h; self.y = y
    }
}

/// Scratch a sparse layer's backward needs (shared by all layers).
public struct MoeScratch {
    /// (chunkRows, F) ×2, (N·K, C) ×2, (N, K), (N, E)
    public var act: UnsafeMutablePointer<Float>, dh: UnsafeMutablePointer<Float>
    public var dyPacked: UnsafeMutablePointer<Float>, dxPacked: UnsafeMutablePointer<Float>
    public var dgates: UnsafeMutablePointer<Float>, dlogits: UnsafeMutablePointer<Float>
    public init(act: UnsafeMutablePointer<Float>, dh: UnsafeMutablePointer<Float>, dyPacked: UnsafeMutablePointer<Float>,
                dxPacked: UnsafeMutablePointer<Float>, dgates: UnsafeMutablePointer<Float>, dlogits: UnsafeMutablePointer<Float>) {
        self.act = act; self.dh = dh; self.dyPacked = dyPacked; self.dxPacked = dxPacked
        self.dgates = dgates; self.dlogits = dlogits
    }
}

/// A sparse FFN layer: router, dispatch with capacity, E expert FFNs, gated combine.
/// Experts' weights are stacked: w1 (E, C, F), b1 (E, F), w2 (E, F, C), b2 (E, C).
public struct MoeLayer {
    public let c: Int, f: Int, e: Int, k: Int

    public init(c: Int, f: Int, e: Int, k: Int) { self.c = c; self.f = f; self.e = e; self.k = k }

    /// Expert capacity = ⌈CF · K · N / E⌉ (Switch's tokens/experts × CF, counting all K
    /// assignments of a token, as GShard/ST-MoE top-2 does); at least 1.
    public func capacity(tokens: Int, factor: Float) -> Int {
        max(1, Int((factor * Float(tokens * k) / Float(e)).rounded(.up)))
    }

    /// out (N, C) is written. Assignments are served by priority: every token's first
    /// choice before any second choice, tokens in order within a rank; an assignment that
    /// finds its expert full is dropped — its gate contributes nothing and, if all of a
    /// token's assignments drop, only the residual carries the token past this layer.
    public func forward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                        wr: UnsafePointer<Float>, w1: UnsafePointer<Float>, b1: UnsafePointer<Float>,
                        w2: UnsafePointer<Float>, b2: UnsafePointer<Float>, n: Int,
                        valid: UnsafePointer<Float>?, capacityFactor: Float, expertDropout: Dropout?,
                        cache: MoeCache, act: UnsafeMutablePointer<Float>) -> RouterStats {
        Router.forward(probs: cache.probs, lse: cache.lse, idx: cache.idx, gates: cache.gates,
                       x: x, wr: wr, n: n, c: c, e: e, k: k)
        var stats = Router.losses(probs: cache.probs, lse: cache.lse, idx: cache.idx, valid: valid,
                                  n: n, e: e, k: k, firstChoiceFraction: cache.firstChoice, meanProb: cache.meanProb)
        let cap = capacity(tokens: stats.tokens, factor: capacityFactor)
        // Count kept assignments per expert, in priority order.
        let counts = cache.expertStart + 1
        for j in 0..<e { counts[j] = 0 }
        for rank in 0..<k {
            for t in 0..<n {
                let a = t * k + rank
                if let valid, valid[t] == 0 { cache.slot[a] = -1; continue }
                let j = Int(cache.idx[a])
                if counts[j] < Int32(cap) {
                    cache.slot[a] = counts[j]
                    counts[j] += 1
                } else {
                    cache.slot[a] = -1
                }
            }
        }
        // Prefix sums turn per-expert positions into packed rows.
        cache.expertStart[0] = 0
        for j in 0..<e { cache.expertStart[j + 1] += cache.expertStart[j] }
        let kept = Int(cache.expertStart[e])
        Parallel.ranges(n * k, granule: 64) { assignments, _ in
            for a in assignments where cache.slot[a] >= 0 {
                let row = Int(cache.expertStart[Int(cache.idx[a])] + cache.slot[a])
                cache.slot[a] = Int32(row)
                let t = a / k
                cache.rowToken[row] = Int32(t)
                (cache.xPacked + row * c).update(from: x + t * c, count: c)
            }
        }
        stats.keptAssignments = kept
        let total = stats.tokens * k
        stats.droppedFraction = total > 0 ? Float(total - kept) / Float(total) : 0
        // Every expert's blocks of rows form one list of work items, balanced over the
        // workers by rows; each block is the same computation whatever the split.
        let ffn = FeedForward(c: c, f: f), block = Gemm.block
        var items = 0
        for j in 0..<e { items += (Int(cache.expertStart[j + 1] - cache.expertStart[j]) + block - 1) / block }
        func locate(_ item: Int) -> (expert: Int, rows: Range<Int>) {
            var remaining = item
            for j in 0..<e {
                let s = Int(cache.expertStart[j]), n = Int(cache.expertStart[j + 1]) - s
                let blocks = (n + block - 1) / block
                if remaining < blocks { return (j, (remaining * block)..<min(n, (remaining + 1) * block)) }
                remaining -= blocks
            }
            preconditionFailure("work item \(item) beyond the experts' blocks")
        }
        let parts = min(Parallel.parts, FeedForward.scratchParts)
        Parallel.run(parts: parts) { p in
            Parallel.assigned(items, part: p, parts: parts, cost: { locate($0).rows.count }) { item in
                let (j, rows) = locate(item)
                let s = Int(cache.expertStart[j])
                ffn.forwardBlock(y: cache.y + s * c, h: cache.h + s * f, act: act + p * block * f, x: cache.xPacked + s * c,
                                 w1: w1 + j * c * f, b1: b1 + j * f, w2: w2 + j * f * c, b2: b2 + j * c, rows: rows,
                                 dropout: expertDropout, dropoutStart: s * f)
            }
        }
        // Combine: out[t] = Σ_k gate·y[row], a token's assignments in rank order.
        Parallel.ranges(n, granule: 16) { tokens, _ in
            for t in tokens {
                let o = out + t * c
                o.update(repeating: 0, count: c)
                for a in (t * k)..<(t * k + k) where cache.slot[a] >= 0 {
                    let g = cache.gates[a], y = cache.y + Int(cache.slot[a]) * c
                    for i in 0..<c { o[i] += g * y[i] }
                }
            }
        }
        return stats
    }

    /// Accumulates parameter gradients (nil when frozen) and dx (nil when nothing below learns).
    /// `trainedExperts` (E), when given, narrows the expert gradients to the experts marked
    /// true: the others get nil weight-gradient pointers, as a frozen group does, so they
    /// cost no weight-gradient GEMM and only pass dx through when something below learns.
    public func backward(dx: UnsafeMutablePointer<Float>?, dwr: UnsafeMutablePointer<Float>?,
                         dw1: UnsafeMutablePointer<Float>?, db1: UnsafeMutablePointer<Float>?,
                         dw2: UnsafeMutablePointer<Float>?, db2: UnsafeMutablePointer<Float>?,
                         trainedExperts: [Bool]? = nil,
                         dout: UnsafePointer<Float>, x: UnsafePointer<Float>, wr: UnsafePointer<Float>,
                         w1: UnsafePointer<Float>, w2: UnsafePointer<Float>, n: Int,
                         valid: UnsafePointer<Float>?, validCount: Int, auxCoef: Float, zCoef: Float,
                         expertDropout: Dropout?, cache: MoeCache, scratch: MoeScratch) {
        let rowsTotal = Int(cache.expertStart[e])
        // Combine backward: dy[row] = gate·dout[t], dgate = ⟨y[row], dout[t]⟩.
        Parallel.ranges(n * k, granule: 64) { assignments, _ in
            for a in assignments {
                let row = Int(cache.slot[a])
                guard row >= 0 else { scratch.dgates[a] = 0; continue }
                let t = a / k
                let g = cache.gates[a]
                let d = dout + t * c, y = cache.y + row * c, dy = scratch.dyPacked + row * c
                var dot: Float = 0
                for i in 0..<c { dy[i] = g * d[i]; dot += y[i] * d[i] }
                scratch.dgates[a] = dot
            }
        }
        let expertsLearn = dw1 != nil || dw2 != nil || db1 != nil || db2 != nil
        if expertsLearn || dx != nil {
            if dx != nil { ParallelOps.fill(scratch.dxPacked, count: rowsTotal * c) }
            let ffn = FeedForward(c: c, f: f)
            for j in 0..<e {
                let learns = expertsLearn && (trainedExperts?[j] ?? true)
                if !learns && dx == nil { continue }
                let s = Int(cache.expertStart[j]), rows = Int(cache.expertStart[j + 1]) - s
                ffn.backward(dx: dx == nil ? nil : scratch.dxPacked + s * c,
                             dw1: learns ? dw1.map { $0 + j * c * f } : nil, db1: learns ? db1.map { $0 + j * f } : nil,
                             dw2: learns ? dw2.map { $0 + j * f * c } : nil, db2: learns ? db2.map { $0 + j * c } : nil,
                             dy: scratch.dyPacked + s * c, x: cache.xPacked + s * c, h: cache.h + s * f,
                             act: scratch.act, dh: scratch.dh,
                             w1: w1 + j * c * f, w2: w2 + j * f * c, n: rows,
                             dropout: expertDropout, dropoutStart: s * f)
            }
            if let dx {
                // Scatter back by blocks of channels, so each token's rows add in row order.
                Parallel.ranges(c, granule: 16) { cols, _ in
                    for row in 0..<rowsTotal {
                        let d = dx + Int(cache.rowToken[row]) * c, s = scratch.dxPacked + row * c
                        for i in cols { d[i] += s[i] }
                    }
                }
            }
        }
        guard dwr != nil || dx != nil else { return }
        Router.backward(dlogits: scratch.dlogits, dgates: scratch.dgates, probs: cache.probs, lse: cache.lse,
                        idx: cache.idx, firstChoiceFraction: cache.firstChoice, valid: valid, validCount: validCount,
                        n: n, e: e, k: k, auxCoef: auxCoef, zCoef: zCoef)
        Linear.backward(dinp: dx, dw: dwr, dbias: nil, dout: scratch.dlogits, inp: x, w: wr, n: n, i: c, o: e)
    }
}
