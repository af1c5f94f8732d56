import MoeKernels

/// Every parameter belongs to exactly one group; a fine-tuning regime is a set of groups.
public enum ParamGroup: String, CaseIterable, Codable, Sendable, Comparable {
    case embed, attn, norm, ffn, router, experts, head
    public static func < (a: ParamGroup, b: ParamGroup) -> Bool { a.rawValue < b.rawValue }
}

/// One named, shaped view into the flat parameter buffer.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let group: ParamGroup
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// Decayed by AdamW (matrices) or not (biases, norm gains, position table excluded too).
    public let decay: Bool
}

/// Tensor indices of one transformer block.
public struct BlockParams: Sendable {
    public let ln1w: Int, ln1b: Int
    /// (C, 3C), (3C)
    public let wqkv: Int, bqkv: Int
    /// (C, C), (C)
    public let wo: Int, bo: Int
    public let ln2w: Int, ln2b: Int
    /// Dense FFN: (C, F), (F), (F, C), (C); sparse: (E, C, F), (E, F), (E, F, C), (E, C).
    public let w1: Int, b1: Int, w2: Int, b2: Int
    /// (C, E), sparse blocks only.
    public let router: Int?
    public var isSparse: Bool { router != nil }
}

/// The flat layout of all parameters of a model config: names, groups, shapes, offsets.
public struct ParameterLayout: Sendable {
    public private(set) var tensors: [TensorInfo] = []
    public private(set) var blocks: [BlockParams] = []
    public let wte: Int, wpe: Int, lnfw: Int, lnfb: Int
    public let headW: Int?, headB: Int?
    public let count: Int

    public init(_ cfg: ModelConfig) {
        var planner = ArenaPlanner()
        var tensors: [TensorInfo] = []
        func add(_ name: String, _ group: ParamGroup, _ shape: [Int], decay: Bool) -> Int {
            let offset = planner.reserve(shape.reduce(1, *))
            tensors.append(TensorInfo(name: name, group: group, shape: shape, offset: offset, decay: decay))
            return tensors.count - 1
        }
        let C = cfg.dModel, F = cfg.dFF, E = cfg.experts
        wte = add("embed.wte", .embed, [cfg.vocab, C], decay: true)
        wpe = add("embed.wpe", .embed, [cfg.context, C], decay: false)
        var blocks: [BlockParams] = []
        for l in 0..<cfg.layers {
            let p = "layers.\(l)."
            let ln1w = add(p + "ln1.weight", .norm, [C], decay: false)
            let ln1b = add(p + "ln1.bias", .norm, [C], decay: false)
            let wqkv = add(p + "attn.wqkv", .attn, [C, 3 * C], decay: true)
            let bqkv = add(p + "attn.bqkv", .attn, [3 * C], decay: false)
            let wo = add(p + "attn.wo", .attn, [C, C], decay: true)
            let bo = add(p + "attn.bo", .attn, [C], decay: false)
            let ln2w = add(p + "ln2.weight", .norm, [C], decay: false)
            let ln2b = add(p + "ln2.bias", .norm, [C], decay: false)
            if cfg.isSparse(layer: l) {
                let router = add(p + "router.w", .router, [C, E], decay: true)
                let w1 = add(p + "experts.w1", .experts, [E, C, F], decay: true)
                let b1 = add(p + "experts.b1", .experts, [E, F], decay: false)
                let w2 = add(p + "experts.w2", .experts, [E, F, C], decay: true)
                let b2 = add(p + "experts.b2", .experts, [E, C], decay: false)
                blocks.append(BlockParams(ln1w: ln1w, ln1b: ln1b, wqkv: wqkv, bqkv: bqkv, wo: wo, bo: bo,
                                          ln2w: ln2w, ln2b: ln2b, w1: w1, b1: b1, w2: w2, b2: b2, router: router))
            } else {
                let w1 = add(p + "ffn.w1", .ffn, [C, F], decay: true)
                let b1 = add(p + "ffn.b1", .ffn, [F], decay: false)
                let w2 = add(p + "ffn.w2", .ffn, [F, C], decay: true)
                let b2 = add(p + "ffn.b2", .ffn, [C], decay: false)
                blocks.append(BlockParams(ln1w: ln1w, ln1b: ln1b, wqkv: wqkv, bqkv: bqkv, wo: wo, bo: bo,
                                          ln2w: ln2w, ln2b: ln2b, w1: w1, b1: b1, w2: w2, b2: b2, router: nil))
            }
        }
        lnfw = add("lnf.weight", .norm, [C], decay: false)
        lnfb = add("lnf.bias", .norm, [C], decay: false)
        if cfg.classes > 0 {
            headW = add("head.w", .head, [C, cfg.classes], decay: true)
            headB = add("head.b", .head, [cfg.classes], decay: false)
        } else {
            headW = nil
            headB = nil
        }
        self.tensors = tensors
        self.blocks = blocks
        count = planner.size
    }

    public func tensor(named name: String) -> TensorInfo? { tensors.first { $0.name == name } }

    /// Parameters per group (exact element counts, not padded).
    public func countByGroup() -> [ParamGroup: Int] {
        var out: [ParamGroup: Int] = [:]
        for t in tensors { out[t.group, default: 0] += t.count }
        return out
    }
}
