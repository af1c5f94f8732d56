import MoeModel

/// Everything that defines one run, flat, with every default written out. The resolved
/// form of this struct (canonical JSON) is what the run hash covers; execution settings
/// that cannot change results by design (output paths, the thread count) live elsewhere;
/// the thread count is recorded with the run.
public struct RunConfig: Codable, Equatable, Sendable {
    /// "pretrain" (next-byte prediction on a corpus) or "finetune" (classification from a parent).
    public var kind = "pretrain"

    // MARK: Data
    /// Pretraining corpus: "wordnet" or a path to a JSONL file of {"text": …} lines.
    public var corpus = "wordnet"
    /// Fine-tuning task: "wn-supersense", "wn-pos" or a path to a JSONL file of {"text", "label"} lines.
    public var task = "wn-supersense"
    /// Fine-tuning train subset size (nested subsets: the 256 are inside the 4096).
    public var trainSize = 4096
    /// Cap on validation/test examples and on the train examples used for train-set evaluation.
    public var evalExamples = 1024

    // MARK: Model (see ModelConfig for each knob)
    public var vocab = 260
    public var context = 128
    public var dModel = 128
    public var layers = 4
    public var heads = 4
    public var dFF = 512
    public var experts = 8
    public var topK = 2
    public var moeEvery = 2
    public var capacityFactorTrain: Float = 1.25
    public var capacityFactorEval: Float = 2.0
    public var auxLossCoef: Float = 0.01
    public var zLossCoef: Float = 0.001
    public var dropout: Float = 0.1
    public var expertDropout: Float = 0.1
    public var norm = "layernorm"

    // MARK: Optimisation
    public var steps = 1000
    public var batchSize = 32
    /// Peak learning rate after warm-up.
    public var lr: Float = 1e-3
    /// Linear warm-up steps from 0 to `lr`.
    public var warmupSteps = 50
    /// "cosine" (to lr·minLrRatio at the last step), "linear" or "constant" after warm-up.
    public var schedule = "cosine"
    public var minLrRatio: Float = 0.1
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var weightDecay: Float = 0.1
    /// Global gradient-norm clip; 0 disables.
    public var gradClip: Float = 1.0
    /// Evaluate train and validation every this many steps (and at the last step).
    public var evalInterval = 100
    /// Pretraining: number of fixed evaluation windows per split.
    public var evalBatches = 8
    /// Steps between checkpoints (the last step is always checkpointed).
    public var checkpointInterval = 250
    public var seed = 0

    // MARK: Fine-tuning
    /// Parent run hash (pretraining run) for fine-tuning; nil for pretraining.
    public var parent: String? = nil
    /// "all", "non-moe", "moe", "attention", "ffn", "experts-only", or "custom" with `groups`.
    public var regime = "all"
    /// Groups updated by the "custom" regime (the head is always updated).
    public var groups: [String] = []

    public init() {}

    /// Activation memory a run may plan for (8 GiB).
    public static let maxActivationBytes = 8 << 30

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, corpus, task, trainSize = "train_size", evalExamples = "eval_examples"
        case vocab, context, dModel = "d_model", layers, heads, dFF = "d_ff", experts, topK = "top_k"
        case moeEvery = "moe_every", capacityFactorTrain = "capacity_factor_train"
        case capacityFactorEval = "capacity_factor_eval", auxLossCoef = "aux_loss_coef", zLossCoef = "z_loss_coef"
        case dropout, expertDropout = "expert_dropout", norm
        case steps, batchSize = "batch_size", lr, warmupSteps = "warmup_steps", schedule, minLrRatio = "min_lr_ratio"
        case beta1, beta2, weightDecay = "weight_decay", gradClip = "grad_clip", evalInterval = "eval_interval"
        case evalBatches = "eval_batches", checkpointInterval = "checkpoint_interval", seed
        case parent, regime, groups
    }

    /// Keys as the user writes them (snake_case).
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }

    /// Keys that describe the architecture: a fine-tuning run inherits them from its parent.
    public static let architectureKeys: Set<String> = ["vocab", "context", "d_model", "layers", "heads", "d_ff",
                                                       "experts", "top_k", "moe_every", "norm"]

    public var isFinetune: Bool { kind == "finetune" }

    public func model(classes: Int) -> ModelConfig {
        var m = ModelConfig()
        m.vocab = vocab; m.context = context; m.dModel = dModel; m.layers = layers; m.heads = heads; m.dFF = dFF
        m.experts = experts; m.topK = topK; m.moeEvery = moeEvery
        m.capacityFactorTrain = capacityFactorTrain; m.capacityFactorEval = capacityFactorEval
        m.auxLossCoef = auxLossCoef; m.zLossCoef = zLossCoef; m.dropout = dropout; m.expertDropout = expertDropout
        m.norm = norm; m.classes = classes
        return m
    }

    /// Range checks beyond the model's own, each naming the key and value.
    public func validate() throws {
        func fail(_ key: String, _ value: Any, _ reason: String) throws -> Never {
            throw ModelConfig.Invalid.value(key: key, value: "\(value)", reason: reason)
        }
        if kind != "pretrain" && kind != "finetune" { try fail("kind", kind, "must be pretrain or finetune") }
        try model(classes: isFinetune ? 2 : 0).validate()
        if steps < 1 || steps > 10_000_000 { try fail("steps", steps, "must be in 1...10000000") }
        if batchSize < 1 || batchSize > 4096 { try fail("batch_size", batchSize, "must be in 1...4096") }
        if !(lr > 0) || !lr.isFinite || lr > 10 { try fail("lr", lr, "must be in (0, 10]") }
        if warmupSteps < 0 { try fail("warmup_steps", warmupSteps, "must be ≥ 0") }
        if !["cosine", "linear", "constant"].contains(schedule) { try fail("schedule", schedule, "must be cosine, linear or constant") }
        if !(minLrRatio >= 0 && minLrRatio <= 1) { try fail("min_lr_ratio", minLrRatio, "must be in [0, 1]") }
        if !(beta1 >= 0 && beta1 < 1) { try fail("beta1", beta1, "must be in [0, 1)") }
        if !(beta2 >= 0 && beta2 < 1) { try fail("beta2", beta2, "must be in [0, 1)") }
        if !(weightDecay >= 0) || !weightDecay.isFinite { try fail("weight_decay", weightDecay, "must be ≥ 0") }
        if !(gradClip >= 0) || !gradClip.isFinite { try fail("grad_clip", gradClip, "must be ≥ 0") }
        if evalInterval < 1 { try fail("eval_interval", evalInterval, "must be ≥ 1") }
        if evalBatches < 1 || evalBatches > 10_000 { try fail("eval_batches", evalBatches, "must be in 1...10000") }
        if checkpointInterval < 1 { try fail("checkpoint_interval", checkpointInterval, "must be ≥ 1") }
        if seed < 0 { try fail("seed", seed, "must be ≥ 0") }
        if trainSize < 1 { try fail("train_size", trainSize, "must be ≥ 1") }
        let activations = model(classes: isFinetune ? 2 : 0).activationBytes(batch: batchSize, time: context)
        if activations > RunConfig.maxActivationBytes {
            try fail("batch_size", batchSize, "with context=\(context) the activations need \(activations >> 20) MiB, more than \(RunConfig.maxActivationBytes >> 20) MiB")
        }
        if evalExamples < 1 { try fail("eval_examples", evalExamples, "must be ≥ 1") }
        if isFinetune {
            if parent == nil { try fail("parent", "null", "a fine-tuning run needs a parent pretraining run") }
            _ = try Regime.groups(regime: regime, custom: groups)
        } else if parent != nil {
            try fail("parent", parent!, "only fine-tuning runs have a parent")
        }
    }
}
