import MoeErrors

/// A config value drawn from a fixed set of names (`norm`, `regime`, `schedule`, …).
/// Decoding rejects any other string; the config resolver lists `choices` in its message.
public protocol ConfigChoice: Codable, Sendable {
    static var choices: [String] { get }
}

extension ConfigChoice where Self: CaseIterable & RawRepresentable, RawValue == String {
    public static var choices: [String] { allCases.map(\.rawValue) }
}

extension ParamGroup: ConfigChoice {}

/// Layer normalisation of the pre-norm blocks and the final norm.
public enum Norm: String, CaseIterable, ConfigChoice, Equatable {
    /// Mean and variance, gain and bias.
    case layernorm
    /// Root mean square, gain only.
    case rmsnorm
}

/// The architecture knobs of one model, each declared once with its default. The run
/// config (MoeTrain) holds one and encodes its keys flat, under the snake_case names of
/// `CodingKeys`; `classes` is set from the task and is not a config key.
public struct ModelConfig: Codable, Hashable, Sendable {
    /// V: byte vocabulary (256 bytes + PAD/BOS/EOS specials, rounded up).
    public var vocab = 260
    /// T: longest sequence the position table covers.
    public var context = 128
    /// C
    public var dModel = 128
    public var layers = 4
    /// H; C must divide evenly.
    public var heads = 4
    /// F
    public var dFF = 512
    /// E; 1 means a dense model (no router, every FFN in group `ffn`).
    public var experts = 8
    /// K: 1 = Switch routing, 2 = ST-MoE routing.
    public var topK = 2
    /// Layer l is sparse when (l + 1) % moeEvery == 0 (ST-MoE: 4; bench-small: 2 → layers 1 and 3).
    public var moeEvery = 2
    public var capacityFactorTrain: Float = 1.25
    public var capacityFactorEval: Float = 2.0
    /// c_B, the Switch load-balancing coefficient α.
    public var auxLossCoef: Float = 0.01
    /// c_z, the router z-loss coefficient.
    public var zLossCoef: Float = 0.001
    /// Residual-branch, embedding and dense-FFN-hidden dropout (ST-MoE Fig. 4: 0.1 is best).
    public var dropout: Float = 0.1
    /// Dropout on the experts' hidden activations (Switch fine-tuning used 0.4).
    public var expertDropout: Float = 0.1
    public var norm = Norm.layernorm
    /// 0: next-byte language-model head (tied to the embedding); > 0: a classification head.
    public var classes = 0

    public init() {}

    /// The config keys of the model. `classes` is not among them: the task sets it.
    public enum CodingKeys: String, CodingKey, CaseIterable, Sendable {
        case vocab, context, dModel = "d_model", layers, heads, dFF = "d_ff", experts, topK = "top_k"
        case moeEvery = "moe_every", capacityFactorTrain = "capacity_factor_train"
        case capacityFactorEval = "capacity_factor_eval", auxLossCoef = "aux_loss_coef", zLossCoef = "z_loss_coef"
        case dropout, expertDropout = "expert_dropout", norm

        /// Keys that fix the parameter layout or the forward pass of the network: a
        /// fine-tuning run inherits them from its parent. The others (capacity, auxiliary
        /// losses, dropout) are training settings a fine-tuning run may change.
        public var isArchitecture: Bool {
            switch self {
            case .vocab, .context, .dModel, .layers, .heads, .dFF, .experts, .topK, .moeEvery, .norm: return true
            case .capacityFactorTrain, .capacityFactorEval, .auxLossCoef, .zLossCoef, .dropout, .expertDropout: return false
            }
        }
    }

    public var headSize: Int { dModel / heads }
    public func isSparse(layer: Int) -> Bool { experts > 1 && (layer + 1) % moeEvery == 0 }
    public var sparseLayers: [Int] { (0..<layers).filter(isSparse) }

    public enum Invalid: MoeError {
        case value(key: String, value: String, reason: String)
        public var exitMeaning: ExitMeaning { .badInput }
        public var description: String {
            switch self {
            case let .value(key, value, reason): return "\(key)=\(value): \(reason)"
            }
        }
    }

    /// Rejects shapes the engine cannot run, naming the key and value.
    public func validate() throws {
        func fail(_ key: String, _ value: Any, _ reason: String) throws -> Never {
            throw Invalid.value(key: key, value: "\(value)", reason: reason)
        }
        if vocab < 259 || vocab > 65536 { try fail("vocab", vocab, "must be in 259...65536 (256 bytes + PAD, BOS, EOS at least)") }
        if context < 2 || context > 4096 { try fail("context", context, "must be in 2...4096") }
        if dModel < 1 || dModel > 8192 { try fail("d_model", dModel, "must be in 1...8192") }
        if heads < 1 || dModel % heads != 0 { try fail("heads", heads, "must be ≥ 1 and divide d_model=\(dModel)") }
        if layers < 1 || layers > 64 { try fail("layers", layers, "must be in 1...64") }
        if dFF < 1 || dFF > 65536 { try fail("d_ff", dFF, "must be in 1...65536") }
        if experts < 1 || experts > 256 { try fail("experts", experts, "must be in 1...256") }
        if topK < 1 || topK > experts { try fail("top_k", topK, "must be in 1...experts (\(experts))") }
        if moeEvery < 1 { try fail("moe_every", moeEvery, "must be ≥ 1") }
        // Above E/K every token fits; 64 leaves room for any expert count while keeping
        // the capacity arithmetic far from integer overflow.
        if !(capacityFactorTrain > 0 && capacityFactorTrain <= 64) { try fail("capacity_factor_train", capacityFactorTrain, "must be in (0, 64]") }
        if !(capacityFactorEval > 0 && capacityFactorEval <= 64) { try fail("capacity_factor_eval", capacityFactorEval, "must be in (0, 64]") }
        if !(auxLossCoef >= 0) || !auxLossCoef.isFinite { try fail("aux_loss_coef", auxLossCoef, "must be ≥ 0") }
        if !(zLossCoef >= 0) || !zLossCoef.isFinite { try fail("z_loss_coef", zLossCoef, "must be ≥ 0") }
        if !(dropout >= 0 && dropout < 1) { try fail("dropout", dropout, "must be in [0, 1)") }
        if !(expertDropout >= 0 && expertDropout < 1) { try fail("expert_dropout", expertDropout, "must be in [0, 1)") }
        if classes < 0 || classes > 100_000 { try fail("classes", classes, "must be in 0...100000") }
        let parameters = ParameterLayout(self).count
        if parameters > ModelConfig.maxParameters {
            try fail("model size", "\(parameters) parameters",
                     "more than \(ModelConfig.maxParameters) (d_model=\(dModel), layers=\(layers), d_ff=\(dFF), experts=\(experts), vocab=\(vocab)); parameters, gradients and AdamW moments take 16 bytes each")
        }
    }

    /// 500M fp32 parameters: 8 GB with gradients and optimizer moments, a third of the
    /// machines moerec targets.
    public static let maxParameters = 500_000_000

    /// Bytes of activation memory a batch of (B, T) needs, for the run-level memory check.
    public func activationBytes(batch: Int, time: Int) -> Int {
        let n = batch * time, c = dModel, f = dFF, k = topK
        var floats = 0
        for l in 0..<layers {
            floats += n * (7 * c + 4)
            floats += isSparse(layer: l) ? n * k * (2 * c + f) + n * (experts + 2 * k + 1) : n * f
        }
        floats += n * (classes > 0 ? 0 : vocab) + n * 12 * c + 2 * FeedForward.chunkRows * f
        return floats * 4 + n * k * 12
    }
}
