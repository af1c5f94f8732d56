import MoeKernels

/// Int32 twin of FloatArena for routing indices.
public final class Int32Arena: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Int32>
    public let count: Int
    public init(count: Int) {
        self.count = count
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { base.deallocate() }
}

/// Per-layer cached activations, as views into one arena.
struct BlockActivations {
    /// (N, C) the residual stream entering the block
    var resid: UnsafeMutablePointer<Float>
    /// (N), (N): the norm's statistics; its output is recomputed in backward (cheap, and
    /// it saves an (N, C) buffer per norm)
    var ln1Mean: UnsafeMutablePointer<Float>, ln1Rstd: UnsafeMutablePointer<Float>
    /// (N, 3C)
    var qkv: UnsafeMutablePointer<Float>
    /// (N, C) heads concatenated, before the output projection
    var attY: UnsafeMutablePointer<Float>
    /// (N, C) residual after attention
    var mid: UnsafeMutablePointer<Float>
    var ln2Mean: UnsafeMutablePointer<Float>, ln2Rstd: UnsafeMutablePointer<Float>
    /// Dense: (N, F) FFN pre-activation
    var h: UnsafeMutablePointer<Float>?
    var moe: MoeCache?
}

/// All activation memory for batches up to (maxB, maxT), allocated once.
final class ActivationMemory {
    let maxB: Int, maxT: Int
    let floats: FloatArena
    let ints: Int32Arena
    var blocks: [BlockActivations] = []
    /// (N, C) input of the final norm = output of the last block; final norm output and stats
    var residOut: UnsafeMutablePointer<Float>
    var lnf: UnsafeMutablePointer<Float>, lnfMean: UnsafeMutablePointer<Float>, lnfRstd: UnsafeMutablePointer<Float>
    /// (N, V) LM logits, overwritten by their gradient; or (B, classes) head logits.
    /// Shares its memory with `dqkv` (never live at the same time).
    var logits: UnsafeMutablePointer<Float>
    /// (B, C) mean-pooled final states
    var pooled: UnsafeMutablePointer<Float>
    /// (N) 1 for real tokens, 0 for padding
    var valid: UnsafeMutablePointer<Float>
    /// (B) labels for the classification loss, (N) shifted targets for the LM loss
    var targets: UnsafeMutablePointer<Int32>

    // Scratch shared by all blocks (never read across blocks).
    var branch: UnsafeMutablePointer<Float>      // (N, C)
    var lnOut: UnsafeMutablePointer<Float>       // (N, C) output of the block norm in use
    var act: UnsafeMutablePointer<Float>         // (chunkRows, F)
    var dh: UnsafeMutablePointer<Float>          // (chunkRows, F)
    var dResid: UnsafeMutablePointer<Float>      // (N, C)
    var dBranch: UnsafeMutablePointer<Float>     // (N, C), shares memory with `branch` (forward-only)
    var dLn: UnsafeMutablePointer<Float>         // (N, C)
    var dqkv: UnsafeMutablePointer<Float>        // (N, 3C), shares memory with `logits`
    var dAttY: UnsafeMutablePointer<Float>       // (N, C)
    var attScratch: UnsafeMutablePointer<Float>  // (attentionParts, T, T)
    var attProbs: UnsafeMutablePointer<Float>    // (attentionParts, T, T)
    /// Workers attention can be split over (each needs its own two (T, T) blocks).
    let attentionParts: Int
    var ceScratch: UnsafeMutablePointer<Float>   // (N, 2) per-row loss and hit
    var dPooled: UnsafeMutablePointer<Float>     // (B, C)
    var moeScratch: MoeScratch?

    init(config cfg: ModelConfig, maxB: Int, maxT: Int) {
        self.maxB = maxB
        self.maxT = maxT
        attentionParts = max(4, Parallel.workers)
        let N = maxB * maxT, C = cfg.dModel, F = cfg.dFF, E = cfg.experts, K = cfg.topK
        let NK = N * K
        var fp = ArenaPlanner(), ip = ArenaPlanner()
        struct Plan { var resid, ln1m, ln1r, qkv, attY, mid, ln2m, ln2r: Int; var h: Int?
            var probs = 0, lse = 0, gates = 0, first = 0, meanP = 0, xp = 0, mh = 0, my = 0
            var idx = 0, slot = 0, rowTok = 0, start = 0 }
        var plans: [Plan] = []
        for l in 0..<cfg.layers {
            var p = Plan(resid: fp.reserve(N * C), ln1m: fp.reserve(N), ln1r: fp.reserve(N),
                         qkv: fp.reserve(N * 3 * C), attY: fp.reserve(N * C),
                         mid: fp.reserve(N * C), ln2m: fp.reserve(N), ln2r: fp.reserve(N), h: nil)
            if cfg.isSparse(layer: l) {
                p.probs = fp.reserve(N * E); p.lse = fp.reserve(N); p.gates = fp.reserve(NK)
                p.first = fp.reserve(E); p.meanP = fp.reserve(E)
                p.xp = fp.reserve(NK * C); p.mh = fp.reserve(NK * F); p.my = fp.reserve(NK * C)
                p.idx = ip.reserve(NK); p.slot = ip.reserve(NK); p.rowTok = ip.reserve(NK); p.start = ip.reserve(E + 1)
            } else {
                p.h = fp.reserve(N * F)
            }
            plans.append(p)
        }
        let rows = FeedForward.chunkRows
        let oResidOut = fp.reserve(N * C), oLnf = fp.reserve(N * C), oLnfm = fp.reserve(N), oLnfr = fp.reserve(N)
        let oPooled = fp.reserve(maxB * C), oValid = fp.reserve(N)
        let oLnOut = fp.reserve(N * C)
        let oBranch = fp.reserve(N * C), oAct = fp.reserve(rows * F), oDh = fp.reserve(rows * F)
        let oDResid = fp.reserve(N * C),  oDLn = fp.reserve(N * C)
        // The logits live only from the head's forward to the head's backward, dqkv only
        // inside the block loop of backward: one buffer serves both.
        let oDqkv = fp.reserve(max(N * 3 * C, cfg.classes > 0 ? maxB * cfg.classes : N * cfg.vocab)), oLogits = oDqkv
        let oDAttY = fp.reserve(N * C), oAttS = fp.reserve(attentionParts * maxT * maxT),
            oAttP = fp.reserve(attentionParts * maxT * maxT), oCE = fp.reserve(2 * N)
        let oDPooled = fp.reserve(maxB * C)
        var oMoe: (Int, Int, Int, Int)? = nil
        if !cfg.sparseLayers.isEmpty {
            oMoe = (fp.reserve(NK * C), fp.reserve(NK * C), fp.reserve(NK), fp.reserve(N * E))
        }
        let oTargets = ip.reserve(N)
        floats = FloatArena(count: fp.size)
        ints = Int32Arena(count: ip.size)
        let f = floats.base, i = ints.base
        for (l, p) in plans.enumerated() {
            var moe: MoeCache? = nil
            if cfg.isSparse(layer: l) {
                moe = MoeCache(probs: f + p.probs, lse: f + p.lse, idx: i + p.idx, gates: f + p.gates, slot: i + p.slot,
                               rowToken: i + p.rowTok, expertStart: i + p.start, firstChoice: f + p.first,
                               meanProb: f + p.meanP, xPacked: f + p.xp, h: f + p.mh, y: f + p.my)
            }
            blocks.append(BlockActivations(resid: f + p.resid, ln1Mean: f + p.ln1m, ln1Rstd: f + p.ln1r,
                                           qkv: f + p.qkv, attY: f + p.attY, mid: f + p.mid,
                                           ln2Mean: f + p.ln2m, ln2Rstd: f + p.ln2r,
                                           h: p.h.map { f + $0 }, moe: moe))
        }
        residOut = f + oResidOut; lnf = f + oLnf; lnfMean = f + oLnfm; lnfRstd = f + oLnfr
        logits = f + oLogits; pooled = f + oPooled; valid = f + oValid
        lnOut = f + oLnOut
        branch = f + oBranch; act = f + oAct; dh = f + oDh; dResid = f + oDResid; dBranch = f + oBranch
        dLn = f + oDLn; dqkv = f + oDqkv; dAttY = f + oDAttY; attScratch = f + oAttS; attProbs = f + oAttP; ceScratch = f + oCE; dPooled = f + oDPooled
        targets = i + oTargets
        if let (dy, dx, dg, dl) = oMoe {
            moeScratch = MoeScratch(act: act, dh: dh, dyPacked: f + dy, dxPacked: f + dx, dgates: f + dg, dlogits: f + dl)
        }
    }

    var bytes: Int { floats.count * 4 + ints.count * 4 }
}
