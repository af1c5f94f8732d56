import MoeModel

/// Everything that defines one run: the model's knobs (`ModelConfig`) and the run's own
/// settings (`RunSettings`), each key declared once, with its default and doc line, in one
/// of the two. Both encode flat into one object of snake_case keys; that resolved form
/// (canonical JSON) is what the run hash covers. Settings that cannot change results by
/// design (output paths, the thread count) live elsewhere; the thread count is recorded
/// with the run.
///
/// Keys read as if they were fields of this struct (`config.lr`, `config.dModel`).
///
/// To add a key: declare it in `RunSettings` (or `ModelConfig` for the network), add its
/// coding key, validate its range in `validate()`, and write its README line. A key added
/// after runs exist must be marked late (`RunSettings.CodingKeys.isLate`) with a default
/// that reproduces the behaviour before it existed; see `ConfigResolver.value(of:)`.
@dynamicMemberLookup
public struct RunConfig: Codable, Equatable, Sendable {
    public var settings = RunSettings()
    public var model = ModelConfig()

    public init() {}

    public subscript<T>(dynamicMember key: WritableKeyPath<RunSettings, T>) -> T {
        get { settings[keyPath: key] }
        set { settings[keyPath: key] = newValue }
    }

    public subscript<T>(dynamicMember key: WritableKeyPath<ModelConfig, T>) -> T {
        get { model[keyPath: key] }
        set { model[keyPath: key] = newValue }
    }

    public init(from decoder: Decoder) throws {
        settings = try RunSettings(from: decoder)
        model = try ModelConfig(from: decoder)
    }

    public func encode(to encoder: Encoder) throws {
        try settings.encode(to: encoder)
        try model.encode(to: encoder)
    }

    // MARK: Derived from the declarations

    /// Every key as the user writes it (snake_case), settings first.
    public static var keys: [String] {
        RunSettings.CodingKeys.allCases.map(\.rawValue) + ModelConfig.CodingKeys.allCases.map(\.rawValue)
    }

    /// Keys a fine-tuning run inherits from its parent (see `ModelConfig.CodingKeys.isArchitecture`).
    public static var architectureKeys: Set<String> {
        Set(ModelConfig.CodingKeys.allCases.filter(\.isArchitecture).map(\.rawValue))
    }

    /// The kind of run a key applies to (nil: both), from `RunSettings.CodingKeys.onlyFor`.
    public static func onlyFor(key: String) -> RunSettings.Kind? {
        RunSettings.CodingKeys(stringValue: key)?.onlyFor
    }

    /// Keys added after runs were first stored: the canonical form leaves such a key out
    /// while it sits at its introduction value, so adding one keeps every existing hash.
    public static var lateKeys: Set<String> {
        Set(RunSettings.CodingKeys.allCases.filter(\.isLate).map(\.rawValue))
    }

    /// Late keys whose default for new configs is not their introduction value (the value
    /// that reproduces the behaviour from before the key existed, and what a stored config
    /// without the key means). Every other late key was introduced at its default.
    public static let introductionValues: [String: String] = [
        RunSettings.CodingKeys.forgettingEval.rawValue: RunSettings.ForgettingEvaluation.none.rawValue,
    ]

    /// The type of every key, read off the default config: the resolver checks and
    /// converts user values with it, so no list of float or enumerated keys is kept.
    public static var schema: [(key: String, type: ConfigType)] {
        let defaults = RunConfig()
        // A property's key is its name in snake_case (`dFF` → `d_ff`), as the coding keys
        // spell it; a test checks that every key is found.
        func snakeCase(_ name: String) -> String {
            var out = "", previous: Character?
            for c in name {
                if c.isUppercase, let p = previous, p.isLowercase || p.isNumber { out += "_" }
                out += c.lowercased()
                previous = c
            }
            return out
        }
        func fields<Key: CodingKey>(_ value: Any, _: Key.Type) -> [(String, ConfigType)] {
            Mirror(reflecting: value).children.compactMap { child in
                guard let label = child.label, let key = Key(stringValue: snakeCase(label)) else { return nil }
                return (key.stringValue, ConfigType(of: child.value))
            }
        }
        return fields(defaults.settings, RunSettings.CodingKeys.self) + fields(defaults.model, ModelConfig.CodingKeys.self)
    }

    // MARK: Meaning

    public var isFinetune: Bool { settings.kind == .finetune }

    /// The network for this run with a head of `classes` outputs (0: the language-model head).
    public func model(classes: Int) -> ModelConfig {
        var m = model
        m.classes = classes
        return m
    }

    /// The parameter groups this run updates. Pretraining updates every group but the
    /// task head; fine-tuning those of its regime, head included. Defined for a config
    /// that passed `validate()`.
    public var trainedGroups: Set<ParamGroup> {
        guard isFinetune else { return Set(ParamGroup.allCases).subtracting([.head]) }
        return (try? settings.regime.groups(custom: settings.groups)) ?? [.head]
    }

    /// Activation memory a run may plan for (8 GiB).
    public static let maxActivationBytes = 8 << 30

    /// The model's checks and the range checks beyond them, each naming the key and value.
    /// `modelValidated`: the model's own checks have passed (a sweep runs them once for
    /// each distinct model of its cells).
    public func validate(modelValidated: Bool = false) throws {
        func fail(_ key: String, _ value: Any, _ reason: String) throws -> Never {
            throw ModelConfig.Invalid.value(key: key, value: "\(value)", reason: reason)
        }
        let s = settings
        if !modelValidated { try model(classes: isFinetune ? 2 : 0).validate() }
        if s.steps < 1 || s.steps > 10_000_000 { try fail("steps", s.steps, "must be in 1...10000000") }
        if s.batchSize < 1 || s.batchSize > 4096 { try fail("batch_size", s.batchSize, "must be in 1...4096") }
        if !(s.lr > 0) || !s.lr.isFinite || s.lr > 10 { try fail("lr", s.lr, "must be in (0, 10]") }
        if s.warmupSteps < 0 { try fail("warmup_steps", s.warmupSteps, "must be ≥ 0") }
        if !(s.minLrRatio >= 0 && s.minLrRatio <= 1) { try fail("min_lr_ratio", s.minLrRatio, "must be in [0, 1]") }
        if !(s.beta1 >= 0 && s.beta1 < 1) { try fail("beta1", s.beta1, "must be in [0, 1)") }
        if !(s.beta2 >= 0 && s.beta2 < 1) { try fail("beta2", s.beta2, "must be in [0, 1)") }
        if !(s.weightDecay >= 0) || !s.weightDecay.isFinite { try fail("weight_decay", s.weightDecay, "must be ≥ 0") }
        if !(s.gradClip >= 0) || !s.gradClip.isFinite { try fail("grad_clip", s.gradClip, "must be ≥ 0") }
        if s.evalInterval < 1 { try fail("eval_interval", s.evalInterval, "must be ≥ 1") }
        if s.evalBatches < 1 || s.evalBatches > 10_000 { try fail("eval_batches", s.evalBatches, "must be in 1...10000") }
        if s.checkpointInterval < 1 { try fail("checkpoint_interval", s.checkpointInterval, "must be ≥ 1") }
        if s.seed < 0 { try fail("seed", s.seed, "must be ≥ 0") }
        if s.trainSize < 1 { try fail("train_size", s.trainSize, "must be ≥ 1") }
        let activations = model(classes: isFinetune ? 2 : 0).activationBytes(batch: s.batchSize, time: model.context)
        if activations > RunConfig.maxActivationBytes {
            try fail("batch_size", s.batchSize, "with context=\(model.context) the activations need \(activations >> 20) MiB, more than \(RunConfig.maxActivationBytes >> 20) MiB")
        }
        if s.evalExamples < 1 { try fail("eval_examples", s.evalExamples, "must be ≥ 1") }
        if s.periodicEvalExamples < 0 || s.periodicEvalExamples > s.evalExamples {
            try fail("periodic_eval_examples", s.periodicEvalExamples, "must be in 0...eval_examples = \(s.evalExamples) (0: eval_examples)")
        }
        if s.periodicEvalExamples != 0 && s.testEval != .selected {
            try fail("periodic_eval_examples", s.periodicEvalExamples, "applies with test_eval: selected, not \(s.testEval.rawValue) (the other modes measure the selected step on the periodic evaluations themselves)")
        }
        if s.testExamples != 0 && s.testExamples < s.evalExamples {
            try fail("test_examples", s.testExamples, "must be 0 (eval_examples) or at least eval_examples = \(s.evalExamples)")
        }
        if s.patience < 0 || s.patience > 1_000_000 { try fail("patience", s.patience, "must be in 0...1000000 (0: no early stopping)") }
        if !(s.esftTopP > 0 && s.esftTopP <= 1) { try fail("esft_top_p", s.esftTopP, "must be in (0, 1]") }
        if s.esftSampleTokens < 1 || s.esftSampleTokens > 10_000_000 { try fail("esft_sample_tokens", s.esftSampleTokens, "must be in 1...10000000") }
        if !s.regime.selectsExperts {
            // They would change the hash and do nothing.
            let defaults = RunSettings()
            if s.esftTopP != defaults.esftTopP { try fail("esft_top_p", s.esftTopP, "applies to the regimes esft-gate, esft-token and random-experts, not \(s.regime.rawValue)") }
            if s.esftSampleTokens != defaults.esftSampleTokens { try fail("esft_sample_tokens", s.esftSampleTokens, "applies to the regimes esft-gate, esft-token and random-experts, not \(s.regime.rawValue)") }
        }
        if isFinetune {
            if s.parent == nil { try fail("parent", "null", "a fine-tuning run needs a parent pretraining run") }
            // The regime against this architecture: `moe` on a dense model would train
            // nothing but the head. (The planner validates after the parent's architecture
            // is inherited, so this sees the parent's shape.)
            let groups = try s.regime.groups(custom: s.groups)
            try s.regime.check(groups, layout: ParameterLayout(model(classes: 2)), experts: model.experts)
        } else if let parent = s.parent {
            try fail("parent", parent, "only fine-tuning runs have a parent")
        }
    }
}

/// The run's own keys: what it trains on, how it optimises, and its lineage.
public struct RunSettings: Codable, Equatable, Sendable {
    public enum Kind: String, CaseIterable, ConfigChoice, Equatable {
        /// Next-byte prediction on a corpus.
        case pretrain
        /// Sequence classification from a pretrained parent.
        case finetune
    }

    public var kind = Kind.pretrain

    // MARK: Data
    /// Pretraining corpus: "wordnet" or a path to a JSONL file of {"text": …} lines.
    public var corpus = "wordnet"
    /// Fine-tuning task: "wn-supersense", "wn-pos" or a path to a JSONL file of {"text", "label"} lines.
    public var task = "wn-supersense"
    /// Fine-tuning train subset size (nested subsets: the 256 are inside the 4096).
    public var trainSize = 4096
    /// Cap on validation/test examples and on the train examples used for train-set evaluation.
    public var evalExamples = 1024

    // MARK: Optimisation
    public var steps = 1000
    public var batchSize = 32
    /// Peak learning rate after warm-up.
    public var lr: Float = 1e-3
    /// Linear warm-up steps from 0 to `lr`.
    public var warmupSteps = 50
    /// The learning rate after warm-up.
    public var schedule = LRSchedule.Kind.cosine
    /// The floor of the cosine and linear schedules, as a fraction of `lr`.
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
    /// Initialisation, data order and dropout masks.
    public var seed = 0

    // MARK: Fine-tuning
    /// Parent run hash (pretraining run) for fine-tuning; nil for pretraining.
    public var parent: String? = nil
    /// The parameter groups fine-tuning updates (see `Regime`).
    public var regime = Regime.all
    /// Groups updated by the `custom` regime (the head is always updated).
    public var groups: [ParamGroup] = []
    /// Fine-tuning early stopping: end the run after this many evaluations in a row
    /// without a new best validation accuracy (0: train all `steps`). Late key.
    public var patience = 0
    /// Fine-tuning: when the test split is evaluated (see `TestEvaluation`). Late key.
    public var testEval = TestEvaluation.last
    /// Fine-tuning with `test_eval: selected`: train and validation examples of each
    /// periodic evaluation (0: `eval_examples`). The evaluation after training, at the
    /// selected step, always covers `eval_examples`. Late key.
    public var periodicEvalExamples = 0
    /// Fine-tuning: test examples of every test evaluation, the first this many of the
    /// test split or the whole split if smaller (0: `eval_examples`), so that the accuracy
    /// reports give can be measured on more examples than train and validation. Late key.
    public var testExamples = 0
    /// Expert-specialized regimes: per sparse layer, the experts taken in descending score
    /// until their share of the layer's total score reaches this (ESFT's example: 0.2). Late key.
    public var esftTopP = 0.2
    /// Expert-specialized regimes: task tokens the parent routes to score the experts (the
    /// first training batches, whole sequences up to this many tokens; ESFT's default 8,192). Late key.
    public var esftSampleTokens = 8192
    /// Fine-tuning: measure what the run forgets (see `ForgettingEvaluation`). Late key,
    /// introduced as `none` (stored configs without it read as `none` and keep their
    /// hashes); new fine-tuning configs measure it unless they say `none`.
    public var forgettingEval = ForgettingEvaluation.parent

    public init() {}

    /// The test examples a test evaluation covers at most (`test_examples`, 0: `eval_examples`).
    public var testExampleLimit: Int { testExamples > 0 ? testExamples : evalExamples }

    /// Whether a fine-tuning run measures forgetting.
    public enum ForgettingEvaluation: String, CaseIterable, ConfigChoice, Equatable {
        /// No (the behaviour before the key existed, and what a stored config without
        /// the key means).
        case none
        /// The language-modelling loss of the run's body on the parent's pretraining
        /// validation text with the parent's LM head (`ForgettingProbe`), before the first
        /// step and after the last; their difference is the run's forgetting.
        case parent
    }

    /// When a fine-tuning run evaluates its test split.
    public enum TestEvaluation: String, CaseIterable, ConfigChoice, Equatable {
        /// At the last step only (the behaviour before the key existed).
        case last
        /// Also at every evaluation that sets a new best validation accuracy, so that a
        /// report can give the test accuracy at the step validation selected.
        case best
        /// Once, after training: the run keeps the parameters of its best validation step
        /// (in memory and in its checkpoints) and evaluates train, validation and test on
        /// `eval_examples` with them, recorded at that step as `selected_loss` and
        /// `selected_acc`. The periodic evaluations measure train and validation only, on
        /// `periodic_eval_examples`, so that selecting the step costs less than measuring it.
        case selected
    }

    public enum CodingKeys: String, CodingKey, CaseIterable, Sendable {
        case kind, corpus, task, trainSize = "train_size", evalExamples = "eval_examples"
        case steps, batchSize = "batch_size", lr, warmupSteps = "warmup_steps", schedule, minLrRatio = "min_lr_ratio"
        case beta1, beta2, weightDecay = "weight_decay", gradClip = "grad_clip", evalInterval = "eval_interval"
        case evalBatches = "eval_batches", checkpointInterval = "checkpoint_interval", seed
        case parent, regime, groups, patience, testEval = "test_eval", periodicEvalExamples = "periodic_eval_examples"
        case testExamples = "test_examples"
        case esftTopP = "esft_top_p", esftSampleTokens = "esft_sample_tokens", forgettingEval = "forgetting_eval"

        /// The one kind of run this key applies to, nil for both. The resolver refuses a key
        /// given for the other kind at any value but its default (it would change the hash
        /// and do nothing); the default stays in the resolved config, as it always has.
        public var onlyFor: Kind? {
            switch self {
            case .corpus, .evalBatches: return .pretrain
            case .task, .trainSize, .evalExamples, .parent, .regime, .groups, .patience, .testEval, .periodicEvalExamples,
                 .testExamples, .esftTopP, .esftSampleTokens, .forgettingEval:
                return .finetune
            case .kind, .steps, .batchSize, .lr, .warmupSteps, .schedule, .minLrRatio, .beta1, .beta2, .weightDecay,
                 .gradClip, .evalInterval, .checkpointInterval, .seed:
                return nil
            }
        }

        /// Added after runs were first stored (see `RunConfig.lateKeys`). Every key of the
        /// first store format answers false; a new key answers true, and its declared
        /// default must reproduce the behaviour from before it existed.
        public var isLate: Bool {
            switch self {
            case .kind, .corpus, .task, .trainSize, .evalExamples, .steps, .batchSize, .lr, .warmupSteps, .schedule,
                 .minLrRatio, .beta1, .beta2, .weightDecay, .gradClip, .evalInterval, .evalBatches,
                 .checkpointInterval, .seed, .parent, .regime, .groups:
                return false
            case .patience, .testEval, .periodicEvalExamples, .testExamples, .esftTopP, .esftSampleTokens, .forgettingEval:
                return true
            }
        }
    }
}

/// How the resolver reads a key's value, derived from the Swift type of its default.
public enum ConfigType: Equatable, Sendable {
    case int, float, string, optionalString
    /// One of a fixed set of names.
    case choice([String])
    /// A list of names from a fixed set.
    case choices([String])

    init(of value: Any) {
        switch value {
        case is Int: self = .int
        case is Float, is Double: self = .float
        case is String: self = .string
        case is String?: self = .optionalString
        case let c as any ConfigChoice: self = .choice(type(of: c).choices)
        case is [ParamGroup]: self = .choices(ParamGroup.choices)
        default: preconditionFailure("config field of unsupported type \(type(of: value))")
        }
    }
}
