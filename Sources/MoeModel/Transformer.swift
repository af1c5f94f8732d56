import MoeKernels

/// One batch as the model sees it. Tokens are (B, T) row-major.
/// Language modelling: `targets` (B, T), −1 where no loss is taken.
/// Classification: `labels` (B) and `lengths` (B) — positions t < length are real tokens,
/// the rest padding (right-padded, so causal attention never lets a real token see one).
public struct Batch {
    public var tokens: UnsafePointer<Int32>
    public var b: Int, t: Int
    public var targets: UnsafePointer<Int32>?
    public var labels: UnsafePointer<Int32>?
    public var lengths: UnsafePointer<Int32>?
    public init(tokens: UnsafePointer<Int32>, b: Int, t: Int, targets: UnsafePointer<Int32>? = nil,
                labels: UnsafePointer<Int32>? = nil, lengths: UnsafePointer<Int32>? = nil) {
        self.tokens = tokens; self.b = b; self.t = t; self.targets = targets; self.labels = labels; self.lengths = lengths
    }
}

public enum Mode: Equatable, Sendable {
    /// Dropout on, the training capacity factor; `step` keys the dropout masks.
    case train(step: Int)
    case eval
}

/// What a forward pass measured.
public struct ForwardResult: Sendable {
    /// CE + c_B·Σ L_B + c_z·Σ L_z, the quantity backward differentiates.
    public var loss: Float = 0
    public var crossEntropy: Float = 0
    /// Σ over sparse layers of L_B and L_z (before coefficients).
    public var auxLoss: Float = 0
    public var zLoss: Float = 0
    /// Rows scored by the cross-entropy and how many the argmax got right.
    public var count = 0
    public var correct = 0
    /// One entry per sparse layer, in layer order.
    public var router: [RouterStats] = []
    /// Expert work actually executed (kept assignments summed over sparse layers).
    public var keptAssignments = 0
    public var tokens = 0
    public init() {}
}

/// A decoder-only MoE transformer: learned positions, pre-norm blocks, a tied LM head or
/// a mean-pooled classification head. Parameters, gradients and activations are each one
/// allocation; `trainable` (narrowed per expert by `trainedExperts`) decides which
/// parameters receive gradients at all.
public final class Transformer {
    public let config: ModelConfig
    public let layout: ParameterLayout
    public let params: FloatArena
    public let grads: FloatArena
    /// Groups that get gradients. Frozen groups cost no weight-gradient GEMM, and backward
    /// stops below the lowest block that holds anything trainable.
    public private(set) var trainable: Set<ParamGroup>
    /// The experts of each sparse layer that train with the `experts` group; nil: all.
    public private(set) var trainedExperts: ExpertSelection?
    /// What gets gradients, in layout order: whole tensors and single experts' slices.
    /// Gradient zeroing and the optimizer walk these and nothing else.
    public private(set) var trainedSlices: [TrainedSlice] = []
    /// Per tensor: whether any of it trains (its gradient pointer is then non-nil).
    private var tensorTrains: [Bool] = []
    /// (V, C) An output projection used in place of the tied `wte` by evaluation forwards of
    /// a language model: a fine-tuned body scored with its parent's LM head (forgetting),
    /// while its own `wte` still embeds the input. nil: the tied head.
    public var evaluationHead: [Float]? {
        didSet { precondition(evaluationHead.map { $0.count == config.vocab * config.dModel } ?? true, "an LM head is (vocab, d_model)") }
    }
    /// Per layer: which experts train, when the layer is sparse and only some of its
    /// experts train; nil otherwise (every expert follows its group).
    private var expertMasks: [[Bool]?] = []
    var memory: ActivationMemory
    let rng: CounterRng
    private var lastMode: Mode = .eval
    private var lastB = 0, lastT = 0
    private var lastValidCount = 0
    private var classification: Bool { config.classes > 0 }

    public init(config: ModelConfig, maxBatch: Int, maxTime: Int? = nil, seed: UInt64,
                trainable: Set<ParamGroup> = Set(ParamGroup.allCases), experts: ExpertSelection? = nil) throws {
        try config.validate()
        self.config = config
        layout = ParameterLayout(config)
        params = FloatArena(count: layout.count)
        grads = FloatArena(count: layout.count)
        self.trainable = trainable
        rng = CounterRng(seed: seed)
        memory = ActivationMemory(config: config, maxB: maxBatch, maxT: maxTime ?? config.context)
        try setTrainable(trainable, experts: experts)
        initialiseParameters()
    }

    /// Trains `groups`, every expert of the `experts` group.
    public func setTrainable(_ groups: Set<ParamGroup>) { apply(groups, experts: nil) }

    /// Trains `groups`, with the `experts` group narrowed to `experts` in each sparse layer.
    /// Refuses a selection that does not fit the model, or one given while the `experts`
    /// group is frozen (it would change nothing).
    public func setTrainable(_ groups: Set<ParamGroup>, experts: ExpertSelection?) throws {
        if let experts {
            try experts.validate(for: config)
            guard groups.contains(.experts) else {
                throw ExpertSelection.Invalid(description: "an expert selection narrows the experts group, which is frozen here (trained groups: \(groups.map(\.rawValue).sorted().joined(separator: ", ")))")
            }
        }
        apply(groups, experts: experts)
    }

    private func apply(_ groups: Set<ParamGroup>, experts: ExpertSelection?) {
        trainable = groups
        trainedExperts = experts
        trainedSlices = layout.trainedSlices(groups: groups, experts: experts)
        tensorTrains = Array(repeating: false, count: layout.tensors.count)
        for s in trainedSlices { tensorTrains[s.tensor] = true }
        let stacked = layout.expertTensorLayers
        expertMasks = layout.blocks.map { bp in
            guard let experts, groups.contains(.experts), let l = stacked[bp.w1],
                  experts.experts[l].count < config.experts else { return nil }
            var mask = Array(repeating: false, count: config.experts)
            for j in experts.experts[l] { mask[j] = true }
            return mask
        }
    }

    public var activationBytes: Int { memory.bytes }

    /// N(0, 0.02) weights (output projections scaled by 1/√(2L) as GPT-2), zero biases,
    /// unit norm gains; each tensor draws from its own counter stream.
    public func initialiseParameters() {
        for (n, t) in layout.tensors.enumerated() { initialise(tensorIndex: n, info: t) }
    }

    public func initialise(tensorIndex n: Int, info t: TensorInfo) {
        let p = params.base + t.offset
        let std: Float = (t.name.hasSuffix("attn.wo") || t.name.hasSuffix(".w2")) ? 0.02 / Float(2 * config.layers).squareRoot() : 0.02
        if t.name.hasSuffix("weight") {
            p.update(repeating: 1, count: t.count)
        } else if t.shape.count == 1 || t.name.hasSuffix(".b1") || t.name.hasSuffix(".b2") {
            p.update(repeating: 0, count: t.count)
        } else {
            for i in 0..<t.count {
                p[i] = std * rng.normal(.initialisation, step: 0, stream: UInt64(n), index: UInt64(i))
            }
        }
    }

    @inline(__always) func w(_ i: Int) -> UnsafeMutablePointer<Float> { params.base + layout.tensors[i].offset }
    /// The gradient of tensor i, nil when none of it trains. A stacked expert tensor has one
    /// when any of its experts trains; `expertMasks` then says which experts' slices of it
    /// the MoE layer writes.
    @inline(__always) func g(_ i: Int) -> UnsafeMutablePointer<Float>? {
        tensorTrains[i] ? grads.base + layout.tensors[i].offset : nil
    }

    /// Zeroes the gradients of what trains (frozen tensors and experts are never written).
    public func zeroGrads() {
        for s in trainedSlices { ParallelOps.fill(grads.base + s.offset, count: s.count) }
    }

    // MARK: Forward

    public func forward(_ batch: Batch, mode: Mode) -> ForwardResult {
        let cfg = config, B = batch.b, T = batch.t, C = cfg.dModel, N = B * T
        precondition(B <= memory.maxB && T <= memory.maxT && T <= cfg.context, "batch exceeds the allocated shape")
        lastMode = mode; lastB = B; lastT = T
        let m = memory
        let step = trainStep(mode)
        let training = step != nil
        var result = ForwardResult()
        result.tokens = N

        // Which tokens are real: all for LM batches, t < length for classification.
        var validPtr: UnsafePointer<Float>? = nil
        lastValidCount = N
        if classification, let lengths = batch.lengths {
            var count = 0
            for b in 0..<B {
                let len = Int(lengths[b])
                for t in 0..<T { m.valid[b * T + t] = t < len ? 1 : 0 }
                count += min(len, T)
            }
            lastValidCount = count
            validPtr = UnsafePointer(m.valid)
        }

        // Embedding: x = wte[token] + wpe[t]
        let x0 = m.blocks.isEmpty ? m.residOut : m.blocks[0].resid
        let wte = w(layout.wte), wpe = w(layout.wpe)
        Parallel.ranges(N, granule: 16) { rows, _ in
            for r in rows {
                let tok = Int(batch.tokens[r]), t = r % T
                let out = x0 + r * C, e = wte + tok * C, p = wpe + t * C
                for i in 0..<C { out[i] = e[i] + p[i] }
            }
        }
        applyDropout(site: 0, step: step, x0, count: N * C)

        for l in 0..<cfg.layers {
            let a = m.blocks[l], bp = layout.blocks[l]
            let next = l + 1 < cfg.layers ? m.blocks[l + 1].resid : m.residOut
            // Attention sub-block: mid = x + drop(attn(norm(x)))
            normForward(out: m.lnOut, mean: a.ln1Mean, rstd: a.ln1Rstd, inp: a.resid, weight: w(bp.ln1w), bias: w(bp.ln1b), n: N)
            Linear.forward(out: a.qkv, inp: m.lnOut, w: w(bp.wqkv), bias: w(bp.bqkv), n: N, i: C, o: 3 * C)
            Attention.forward(y: a.attY, att: m.attProbs, scratchParts: m.attentionParts, qkv: a.qkv,
                              b: B, t: T, c: C, h: cfg.heads)
            Linear.forward(out: m.branch, inp: a.attY, w: w(bp.wo), bias: w(bp.bo), n: N, i: C, o: C)
            applyDropout(site: UInt64(1 + 2 * l), step: step, m.branch, count: N * C)
            ParallelOps.sum(a.mid, a.resid, m.branch, count: N * C)
            // FFN / MoE sub-block: next = mid + drop(ffn(norm(mid)))
            normForward(out: m.lnOut, mean: a.ln2Mean, rstd: a.ln2Rstd, inp: a.mid, weight: w(bp.ln2w), bias: w(bp.ln2b), n: N)
            if let cache = a.moe, let router = bp.router {
                let moe = MoeLayer(c: C, f: cfg.dFF, e: cfg.experts, k: cfg.topK)
                let stats = moe.forward(out: m.branch, x: m.lnOut, wr: w(router), w1: w(bp.w1), b1: w(bp.b1),
                                        w2: w(bp.w2), b2: w(bp.b2), n: N, valid: validPtr,
                                        capacityFactor: training ? cfg.capacityFactorTrain : cfg.capacityFactorEval,
                                        expertDropout: expertDropout(layer: l, step: step), cache: cache, act: m.act)
                result.router.append(stats)
                result.auxLoss += stats.auxLoss
                result.zLoss += stats.zLoss
                result.keptAssignments += stats.keptAssignments
            } else {
                FeedForward(c: C, f: cfg.dFF).forward(y: m.branch, h: a.h!, act: m.act, x: m.lnOut, w1: w(bp.w1), b1: w(bp.b1),
                                                      w2: w(bp.w2), b2: w(bp.b2), n: N,
                                                      dropout: hiddenDropout(layer: l, step: step))
            }
            applyDropout(site: UInt64(2 + 2 * l), step: step, m.branch, count: N * C)
            ParallelOps.sum(next, a.mid, m.branch, count: N * C)
        }

        normForward(out: m.lnf, mean: m.lnfMean, rstd: m.lnfRstd, inp: m.residOut, weight: w(layout.lnfw), bias: w(layout.lnfb), n: N)

        let ce: (lossSum: Double, count: Int, correct: Int)
        if classification {
            let K = cfg.classes
            precondition(batch.labels != nil && batch.lengths != nil, "classification batches need labels and lengths")
            // Mean-pool the final states over real positions.
            for b in 0..<B {
                let len = max(1, min(Int(batch.lengths![b]), T))
                let p = m.pooled + b * C
                p.update(repeating: 0, count: C)
                for t in 0..<len { Ops.add(p, m.lnf + (b * T + t) * C, count: C) }
                let inv = 1 / Float(len)
                for i in 0..<C { p[i] *= inv }
                m.targets[b] = batch.labels![b]
            }
            Linear.forward(out: m.logits, inp: m.pooled, w: w(layout.headW!), bias: w(layout.headB!), n: B, i: C, o: K)
            ce = Ops.crossEntropy(logits: m.logits, targets: m.targets, rows: B, v: K,
                                  gradScale: 1 / Float(B), backward: training, scratch: m.ceScratch)
        } else {
            precondition(batch.targets != nil, "language-model batches need targets")
            // Tied output projection: logits = lnf · wteᵀ (or the evaluation head's, never in training).
            precondition(evaluationHead == nil || !training, "an evaluation head is for evaluation forwards only")
            func project(_ head: UnsafePointer<Float>) {
                Gemm.sgemmParallel(transB: true, m: N, n: cfg.vocab, k: C, a: m.lnf, lda: C, b: head, ldb: C, beta: 0,
                                   c: m.logits, ldc: cfg.vocab)
            }
            if let head = evaluationHead { head.withUnsafeBufferPointer { project($0.baseAddress!) } } else { project(wte) }
            var counted = 0
            for i in 0..<N where batch.targets![i] >= 0 { counted += 1 }
            ce = Ops.crossEntropy(logits: m.logits, targets: batch.targets!, rows: N, v: cfg.vocab,
                                  gradScale: counted > 0 ? 1 / Float(counted) : 0, backward: training,
                                  scratch: m.ceScratch)
            for i in 0..<N { m.targets[i] = batch.targets![i] }
        }
        result.count = ce.count
        result.correct = ce.correct
        result.crossEntropy = ce.count > 0 ? Float(ce.lossSum / Double(ce.count)) : 0
        result.loss = result.crossEntropy + cfg.auxLossCoef * result.auxLoss + cfg.zLossCoef * result.zLoss
        return result
    }

    // MARK: Backward

    /// Backward of the last `forward(_, mode: .train)`: accumulates into `grads` for
    /// trainable groups only. Call `zeroGrads()` first.
    public func backward(_ batch: Batch) {
        guard let step = trainStep(lastMode) else { preconditionFailure("backward needs a training forward") }
        let cfg = config, B = lastB, T = lastT, C = cfg.dModel, N = B * T, L = cfg.layers
        let m = memory
        let lowest = lowestTrainableSite()
        let final = 2 * L + 1
        let validPtr: UnsafePointer<Float>? = classification ? UnsafePointer(m.valid) : nil

        // Head → d(lnf) in dLn.
        ParallelOps.fill(m.dLn, count: N * C)
        if classification {
            let K = cfg.classes
            Linear.backward(dinp: m.dPooled.zeroed(B * C), dw: g(layout.headW!), dbias: g(layout.headB!),
                            dout: m.logits, inp: m.pooled, w: w(layout.headW!), n: B, i: C, o: K)
            if lowest < final {
                for b in 0..<B {
                    let len = max(1, min(Int(batch.lengths![b]), T))
                    let inv = 1 / Float(len), dp = m.dPooled + b * C
                    for t in 0..<len {
                        let d = m.dLn + (b * T + t) * C
                        for i in 0..<C { d[i] = dp[i] * inv }
                    }
                }
            }
        } else {
            if let dwte = g(layout.wte) {
                Gemm.sgemmParallel(transA: true, m: cfg.vocab, n: C, k: N, a: m.logits, lda: cfg.vocab, b: m.lnf, ldb: C,
                                   beta: 1, c: dwte, ldc: C)
            }
            if lowest < final {
                Gemm.sgemmParallel(m: N, n: C, k: cfg.vocab, a: m.logits, lda: cfg.vocab, b: w(layout.wte), ldb: C,
                                   beta: 0, c: m.dLn, ldc: C)
            }
        }
        guard lowest < final || g(layout.lnfw) != nil else { return }
        ParallelOps.fill(m.dResid, count: N * C)
        normBackward(dinp: lowest < final ? m.dResid : nil, dweight: g(layout.lnfw), dbias: g(layout.lnfb),
                     dout: m.dLn, inp: m.residOut, weight: w(layout.lnfw), mean: m.lnfMean, rstd: m.lnfRstd, n: N)

        // dResid now holds ∂L/∂(block output); walk the blocks in reverse.
        var l = L - 1
        while l >= 0 {
            let a = m.blocks[l], bp = layout.blocks[l]
            let ffnSite = 2 + 2 * l, attnSite = 1 + 2 * l
            if ffnSite < lowest { break }
            let passDown = ffnSite > lowest
            // next = mid + drop(branch): ∂branch = drop(∂next); ∂mid = ∂next + ∂(norm path)
            ParallelOps.copy(m.dBranch, from: m.dResid, count: N * C)
            applyDropout(site: UInt64(ffnSite), step: step, m.dBranch, count: N * C)
            ParallelOps.fill(m.dLn, count: N * C)
            normForward(out: m.lnOut, mean: a.ln2Mean, rstd: a.ln2Rstd, inp: a.mid, weight: w(bp.ln2w), bias: w(bp.ln2b), n: N)
            if let cache = a.moe, let router = bp.router {
                let moe = MoeLayer(c: C, f: cfg.dFF, e: cfg.experts, k: cfg.topK)
                moe.backward(dx: passDown || g(bp.ln2w) != nil ? m.dLn : nil, dwr: g(router),
                             dw1: g(bp.w1), db1: g(bp.b1), dw2: g(bp.w2), db2: g(bp.b2), trainedExperts: expertMasks[l],
                             dout: m.dBranch, x: m.lnOut, wr: w(router), w1: w(bp.w1), w2: w(bp.w2), n: N,
                             valid: validPtr, validCount: lastValidCount,
                             auxCoef: cfg.auxLossCoef, zCoef: cfg.zLossCoef,
                             expertDropout: expertDropout(layer: l, step: step), cache: cache, scratch: m.moeScratch!)
            } else {
                FeedForward(c: C, f: cfg.dFF).backward(dx: passDown || g(bp.ln2w) != nil ? m.dLn : nil,
                                                       dw1: g(bp.w1), db1: g(bp.b1), dw2: g(bp.w2), db2: g(bp.b2),
                                                       dy: m.dBranch, x: m.lnOut, h: a.h!, act: m.act, dh: m.dh,
                                                       w1: w(bp.w1), w2: w(bp.w2), n: N,
                                                       dropout: hiddenDropout(layer: l, step: step))
            }
            normBackward(dinp: passDown ? m.dResid : nil, dweight: g(bp.ln2w), dbias: g(bp.ln2b), dout: m.dLn,
                         inp: a.mid, weight: w(bp.ln2w), mean: a.ln2Mean, rstd: a.ln2Rstd, n: N)
            if !passDown { break }

            // mid = x + drop(attn(norm(x)))
            let passDownAttn = attnSite > lowest
            ParallelOps.copy(m.dBranch, from: m.dResid, count: N * C)
            applyDropout(site: UInt64(attnSite), step: step, m.dBranch, count: N * C)
            ParallelOps.fill(m.dAttY, count: N * C)
            Linear.backward(dinp: m.dAttY, dw: g(bp.wo), dbias: g(bp.bo), dout: m.dBranch, inp: a.attY, w: w(bp.wo),
                            n: N, i: C, o: C)
            Attention.backward(dqkv: m.dqkv, scratch: m.attScratch, dy: m.dAttY, att: m.attProbs,
                               scratchParts: m.attentionParts, qkv: a.qkv,
                               b: B, t: T, c: C, h: cfg.heads)
            let needLn1 = passDownAttn || g(bp.ln1w) != nil
            if needLn1 { ParallelOps.fill(m.dLn, count: N * C) }
            if g(bp.wqkv) != nil {
                normForward(out: m.lnOut, mean: a.ln1Mean, rstd: a.ln1Rstd, inp: a.resid, weight: w(bp.ln1w), bias: w(bp.ln1b), n: N)
            }
            Linear.backward(dinp: needLn1 ? m.dLn : nil, dw: g(bp.wqkv), dbias: g(bp.bqkv), dout: m.dqkv, inp: m.lnOut,
                            w: w(bp.wqkv), n: N, i: C, o: 3 * C)
            if needLn1 {
                normBackward(dinp: passDownAttn ? m.dResid : nil, dweight: g(bp.ln1w), dbias: g(bp.ln1b), dout: m.dLn,
                             inp: a.resid, weight: w(bp.ln1w), mean: a.ln1Mean, rstd: a.ln1Rstd, n: N)
            }
            if !passDownAttn { break }
            l -= 1
        }

        if lowest == 0, let dwte = g(layout.wte), let dwpe = g(layout.wpe) {
            applyDropout(site: 0, step: step, m.dResid, count: N * C)
            // Scatter by blocks of channels, so each table row adds the tokens in order.
            Parallel.ranges(C, granule: 16) { cols, _ in
                for r in 0..<N {
                    let d = m.dResid + r * C
                    let e = dwte + Int(batch.tokens[r]) * C, p = dwpe + (r % T) * C
                    for i in cols { e[i] += d[i] }
                    for i in cols { p[i] += d[i] }
                }
            }
        }
    }

    /// Sites in forward order: 0 embedding, 1+2l attention of block l, 2+2l FFN/MoE of
    /// block l, 2L+1 final norm and head. Backward never goes below the lowest site that
    /// holds a trainable tensor.
    public func lowestTrainableSite() -> Int {
        let L = config.layers
        func has(_ ids: [Int?]) -> Bool { ids.contains { $0.map { g($0) != nil } ?? false } }
        if has([layout.wte, layout.wpe]) { return 0 }
        for l in 0..<L {
            let bp = layout.blocks[l]
            if has([bp.ln1w, bp.ln1b, bp.wqkv, bp.bqkv, bp.wo, bp.bo]) { return 1 + 2 * l }
            if has([bp.ln2w, bp.ln2b, bp.w1, bp.b1, bp.w2, bp.b2, bp.router]) { return 2 + 2 * l }
        }
        return 2 * L + 1
    }

    // MARK: Helpers

    private func trainStep(_ mode: Mode) -> UInt64? {
        if case let .train(step) = mode { return UInt64(step) }
        return nil
    }

    private func dropout(site: UInt64, step: UInt64?) -> Dropout? {
        guard let step, config.dropout > 0 else { return nil }
        return Dropout(rate: config.dropout, rng: rng, purpose: .dropout, step: step, site: site)
    }

    /// Dropout at `site` over a whole (N, C) buffer, split over the workers (the mask is
    /// a function of each element's index, so the split changes nothing).
    private func applyDropout(site: UInt64, step: UInt64?, _ x: UnsafeMutablePointer<Float>, count: Int) {
        guard let d = dropout(site: site, step: step) else { return }
        Parallel.ranges(count, granule: 4096) { r, _ in d.apply(x + r.lowerBound, count: r.count, start: r.lowerBound) }
    }

    private func hiddenDropout(layer: Int, step: UInt64?) -> Dropout? {
        guard let step, config.dropout > 0 else { return nil }
        return Dropout(rate: config.dropout, rng: rng, purpose: .dropout, step: step, site: 1000 + UInt64(layer))
    }

    private func expertDropout(layer: Int, step: UInt64?) -> Dropout? {
        guard let step, config.expertDropout > 0 else { return nil }
        return Dropout(rate: config.expertDropout, rng: rng, purpose: .expertDropout, step: step, site: UInt64(layer))
    }

    private func normForward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                             inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, n: Int) {
        if config.norm == .rmsnorm {
            Ops.rmsNormForward(out: out, rstd: rstd, inp: inp, weight: weight, n: n, c: config.dModel)
        } else {
            Ops.layerNormForward(out: out, mean: mean, rstd: rstd, inp: inp, weight: weight, bias: bias, n: n, c: config.dModel)
        }
    }

    private func normBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                              dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                              weight: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int) {
        if config.norm == .rmsnorm {
            // RMSNorm has no bias; the bias tensor stays at zero and gets no gradient.
            Ops.rmsNormBackward(dinp: dinp, dweight: dweight, dout: dout, inp: inp, weight: weight, rstd: rstd, n: n, c: config.dModel)
        } else {
            Ops.layerNormBackward(dinp: dinp, dweight: dweight, dbias: dbias, dout: dout, inp: inp, weight: weight,
                                  mean: mean, rstd: rstd, n: n, c: config.dModel)
        }
    }
}

extension UnsafeMutablePointer where Pointee == Float {
    @inline(__always) func zeroed(_ count: Int) -> UnsafeMutablePointer<Float> {
        update(repeating: 0, count: count)
        return self
    }
}

extension Transformer {
    /// The logits of the last forward pass, which must have run in `.eval` mode (a training
    /// forward leaves their gradient in the same buffer): (B·T, vocab) for the language
    /// model, (B, classes) for the classification head, row-major.
    public func lastLogits() -> [Float] {
        precondition(lastMode == .eval, "logits are kept only by an evaluation forward")
        let count = classification ? lastB * config.classes : lastB * lastT * config.vocab
        return Array(UnsafeBufferPointer(start: memory.logits, count: count))
    }
}

extension Transformer {
    /// The routing decisions of the last forward pass (chosen experts and packed rows of
    /// every sparse layer): tests use it to tell when a perturbation changed the routing,
    /// where the loss is not differentiable.
    public func routingSignature() -> [Int32] {
        var out: [Int32] = []
        let n = lastB * lastT * config.topK
        for block in memory.blocks {
            guard let cache = block.moe else { continue }
            out.append(contentsOf: UnsafeBufferPointer(start: cache.idx, count: n))
            out.append(contentsOf: UnsafeBufferPointer(start: cache.slot, count: n))
        }
        return out
    }
}

/// What the router of one sparse layer decided in a forward pass: views into the model's
/// activation memory, valid until its next forward pass.
public struct LayerRouting {
    /// The layer's index among all layers.
    public let layer: Int
    /// N, E, K
    public let tokens: Int, experts: Int, topK: Int
    /// (N, E) the router's softmax probabilities
    public let probs: UnsafeBufferPointer<Float>
    /// (N, K) chosen experts by descending probability, before capacity dropping
    public let chosen: UnsafeBufferPointer<Int32>
    /// (N) 1 for real tokens, 0 for padding; nil when every token is real
    public let valid: UnsafeBufferPointer<Float>?

    public init(layer: Int, tokens: Int, experts: Int, topK: Int, probs: UnsafeBufferPointer<Float>,
                chosen: UnsafeBufferPointer<Int32>, valid: UnsafeBufferPointer<Float>?) {
        precondition(probs.count == tokens * experts && chosen.count == tokens * topK && (valid?.count ?? tokens) == tokens,
                     "routing views of the wrong sizes")
        self.layer = layer; self.tokens = tokens; self.experts = experts; self.topK = topK
        self.probs = probs; self.chosen = chosen; self.valid = valid
    }
}

extension Transformer {
    /// The routing of every sparse layer in the last forward pass, in layer order: the
    /// probabilities and top-k choices the forward computed anyway (expert scoring reads
    /// them; nothing is kept beyond the activation memory they live in).
    public func lastRouting() -> [LayerRouting] {
        let n = lastB * lastT, e = config.experts, k = config.topK
        let valid = classification ? UnsafeBufferPointer(start: memory.valid, count: n) : nil
        return memory.blocks.enumerated().compactMap { l, block in
            block.moe.map {
                LayerRouting(layer: l, tokens: n, experts: e, topK: k, probs: UnsafeBufferPointer(start: $0.probs, count: n * e),
                             chosen: UnsafeBufferPointer(start: $0.idx, count: n * k), valid: valid)
            }
        }
    }
}

extension Transformer {
    /// Per sparse layer, the share of tokens whose first choice was each expert in the last
    /// forward pass (the fᵢ of the load-balancing loss): the "per-expert load" metric.
    public func expertLoad() -> [[Float]] {
        memory.blocks.compactMap { block in
            block.moe.map { Array(UnsafeBufferPointer(start: $0.firstChoice, count: config.experts)) }
        }
    }

    /// Multiply-accumulate count of one forward pass per token, dense parts only, and per
    /// kept expert assignment: the FLOP model the benchmarks use.
    public func forwardFlopsPerToken(t: Int) -> (dense: Double, perAssignment: Double) {
        let C = Double(config.dModel), F = Double(config.dFF), T = Double(t)
        var dense = 0.0
        for l in 0..<config.layers {
            dense += 2 * (4 * C * C)            // qkv + output projections
            dense += 2 * (2 * T * C)            // scores and P·V (full square, as executed)
            if config.isSparse(layer: l) { dense += 2 * C * Double(config.experts) } else { dense += 2 * (2 * C * F) }
        }
        if config.classes == 0 { dense += 2 * C * Double(config.vocab) }
        return (dense, 2 * (2 * C * F))
    }
}

extension Transformer {
    /// FLOPs of one training step under the current trainable set, by the model the
    /// regime benchmark compares against: forward always; input-gradient GEMMs for every
    /// site above the lowest trainable one; weight-gradient GEMMs only for trainable
    /// tensors. Experts are counted at K assignments per token (no dropping).
    public func stepFlops(t T: Int, tokens N: Int) -> Double {
        let C = Double(config.dModel), F = Double(config.dFF), E = Double(config.experts), K = Double(config.topK)
        let n = Double(N), tt = Double(T)
        let lowest = lowestTrainableSite()
        func trains(_ i: Int?) -> Bool { i.map { g($0) != nil } ?? false }
        var total = 0.0
        for l in 0..<config.layers {
            let bp = layout.blocks[l]
            let proj = 2 * n * 4 * C * C, core = 2 * n * 2 * tt * C
            total += proj + core
            if 1 + 2 * l > lowest { total += proj + 2 * core } else if 1 + 2 * l == lowest { total += 2 * core }
            if trains(bp.wqkv) { total += proj }
            let ffn = config.isSparse(layer: l) ? 2 * n * K * 2 * C * F : 2 * n * 2 * C * F
            let router = config.isSparse(layer: l) ? 2 * n * C * E : 0
            // Only the trained experts' share of the expert work, routing taken as balanced.
            let trainedShare = expertMasks[l].map { Double($0.filter { $0 }.count) / E } ?? 1
            total += ffn + router
            if 2 + 2 * l > lowest { total += ffn + router } else if 2 + 2 * l == lowest { total += ffn / 2 * trainedShare }
            if trains(bp.w1) { total += ffn * trainedShare }
            if trains(bp.router) { total += router }
        }
        return total
    }
}
