import MoeErrors
import MoeKernels

/// Which experts of each sparse layer train: fine-tuning single experts (ESFT, Wang et al.
/// 2024; a random choice of experts as its control). A selection narrows the `experts`
/// group and nothing else: expert j of a sparse layer trains when the group trains and j is
/// listed for that layer. Its four tensors' slices (w1 (C, F), b1 (F), w2 (F, C), b2 (C) of
/// the stacked (E, …) tensors) then get gradients and optimizer moments; a frozen expert's
/// slices get neither, as a frozen group's tensors do.
public struct ExpertSelection: Equatable, Sendable, Codable {
    /// One entry per sparse layer, in layer order (`ModelConfig.sparseLayers`), as the router
    /// statistics are: the experts that train, ascending and without repeats. An empty entry
    /// freezes every expert of its layer.
    public let experts: [[Int]]

    /// Takes each layer's experts as a set: order and repeats do not matter.
    public init(_ experts: [[Int]]) { self.experts = experts.map { Array(Set($0)).sorted() } }

    private enum CodingKeys: String, CodingKey { case experts }

    /// Decoded through `init(_:)`, so a stored selection is ascending and free of repeats
    /// too (a repeat would give one expert's slice two optimizer slots).
    public init(from decoder: Decoder) throws {
        self.init(try decoder.container(keyedBy: CodingKeys.self).decode([[Int]].self, forKey: .experts))
    }

    /// The first `k` experts (0..<k) of every sparse layer of `config`.
    public static func first(_ k: Int, of config: ModelConfig) -> ExpertSelection {
        ExpertSelection(Array(repeating: Array(0..<min(k, config.experts)), count: config.sparseLayers.count))
    }

    /// `counts[l]` experts of sparse layer l drawn without replacement, each layer's from
    /// its own counter stream of `seed` (the control that trains as many experts as ESFT
    /// chose, but not the ones it chose): the experts ordered by their 64-bit draw (ties,
    /// which need equal draws, by lower index), the first `counts[l]` taken.
    public static func random(counts: [Int], experts e: Int, seed: UInt64) -> ExpertSelection {
        let rng = CounterRng(seed: seed)
        return ExpertSelection(counts.enumerated().map { l, count in
            let draws = (0..<e).map { rng.bits(.expertChoice, step: 0, stream: UInt64(l), index: UInt64($0)) }
            let order = (0..<e).sorted { draws[$0] < draws[$1] || (draws[$0] == draws[$1] && $0 < $1) }
            return Array(order.prefix(max(0, count)))
        })
    }

    public struct Invalid: MoeError {
        public let description: String
        public var exitMeaning: ExitMeaning { .badInput }
    }

    /// Refuses a selection that does not fit `config`: one entry per sparse layer, experts
    /// in 0..<E.
    public func validate(for config: ModelConfig) throws {
        let sparse = config.sparseLayers
        guard experts.count == sparse.count else {
            throw Invalid(description: "expert selection names \(experts.count) sparse layers; this model (layers=\(config.layers), moe_every=\(config.moeEvery), experts=\(config.experts)) has \(sparse.count)")
        }
        for (l, chosen) in experts.enumerated() {
            if let bad = chosen.first(where: { !(0..<config.experts).contains($0) }) {
                throw Invalid(description: "expert selection: expert \(bad) of layer \(sparse[l]) is not in 0..<\(config.experts)")
            }
        }
    }
}

/// A run of parameters that trains as one unit and owns its optimizer moments: a whole
/// tensor, or expert j's slice of a stacked expert tensor.
public struct TrainedSlice: Sendable, Equatable {
    /// Index into `ParameterLayout.tensors`.
    public let tensor: Int
    /// The expert whose slice this is; nil for a whole tensor.
    public let expert: Int?
    /// Offset into the flat parameter (and gradient) buffer, and element count.
    public let offset: Int, count: Int
    /// The tensor's name, or `<tensor>[j]` for expert j's slice (its optimizer moments are
    /// checkpointed as `<name>.m` and `<name>.v`).
    public let name: String
    /// The tensor's shape, without the leading E for an expert's slice.
    public let shape: [Int]
}

extension ParameterLayout {
    /// For each tensor stacked over experts (w1, b1, w2, b2 of a sparse block), the ordinal
    /// of its sparse layer.
    public var expertTensorLayers: [Int: Int] {
        var out: [Int: Int] = [:]
        for (ordinal, bp) in blocks.filter(\.isSparse).enumerated() {
            for i in [bp.w1, bp.b1, bp.w2, bp.b2] { out[i] = ordinal }
        }
        return out
    }

    /// What trains when `groups` train, narrowed by `experts`, in layout order (a tensor's
    /// experts ascending). A layer whose selection lists every expert trains its expert
    /// tensors whole: the same slices, moments and sums as without a selection.
    public func trainedSlices(groups: Set<ParamGroup>, experts: ExpertSelection?) -> [TrainedSlice] {
        let stacked = expertTensorLayers
        var out: [TrainedSlice] = []
        for (i, t) in tensors.enumerated() where groups.contains(t.group) {
            guard let experts, let l = stacked[i], experts.experts[l].count < t.shape[0] else {
                out.append(TrainedSlice(tensor: i, expert: nil, offset: t.offset, count: t.count, name: t.name, shape: t.shape))
                continue
            }
            let per = t.count / t.shape[0]
            for j in experts.experts[l] {
                out.append(TrainedSlice(tensor: i, expert: j, offset: t.offset + j * per, count: per,
                                        name: "\(t.name)[\(j)]", shape: Array(t.shape.dropFirst())))
            }
        }
        return out
    }
}
