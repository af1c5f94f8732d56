import Foundation
import MoeJSON
import MoeKernels
import MoeMetricNames
import MoeStore
import MoeTrain

/// The two reference classifiers of a fine-tuning config, measured on exactly its data:
/// the majority class of its train subset, and the linear n-gram classifier
/// (`LinearBaseline`) trained on that subset; both scored on its validation and test
/// examples (at most `eval_examples` of each, the ones the fine-tuned model is scored on).
public struct BaselineResult: Equatable {
    public var task: String
    public var trainSize: Int
    public var evaluated: (validation: Int, test: Int)
    public var majority: (validation: Double, test: Double)
    public var linear: (validation: Double, test: Double)
    public var seconds: Double

    public static func == (a: BaselineResult, b: BaselineResult) -> Bool {
        a.task == b.task && a.trainSize == b.trainSize && a.evaluated == b.evaluated && a.majority == b.majority
            && a.linear == b.linear
    }
}

/// A reference classifier kept in the store as a run of kind `baseline`.
public enum BaselineMethod: String, CaseIterable, Sendable {
    /// Always the most frequent class of the train subset.
    case majority
    /// `LinearBaseline`: logistic regression on hashed word and character n-grams.
    case linear
}

public enum Baselines {
    /// Part of every baseline run's hash; bumped when a change alters a baseline's result.
    public static let numericsVersion = 1

    /// Resolves the data of `config` (a fine-tuning config) and measures both baselines.
    public static func measure(_ config: RunConfig, data: DataProvider) throws -> BaselineResult {
        let (classes, train, validation, test, majority) = try classification(config, data: data)
        let started = Date()
        let model = linear(config).fit(train, classes: classes)
        return BaselineResult(task: config.task, trainSize: train.count, evaluated: (validation.count, test.count),
                              majority: majority,
                              linear: (model.accuracy(validation), model.accuracy(test)),
                              seconds: Date().timeIntervalSince(started))
    }

    static func classification(_ config: RunConfig, data: DataProvider) throws
        -> (classes: Int, train: [EncodedExample], validation: [EncodedExample], test: [EncodedExample],
            majority: (validation: Double, test: Double))
    {
        guard config.isFinetune else { throw InputError("kind=pretrain: baselines are classifiers; give a fine-tuning config (kind=finetune)") }
        let prepared = try data.prepare(config)
        guard case let .classification(classes, train, validation, test) = prepared.data,
              let majority = prepared.subsetMajority else {
            throw InputError("task \(config.task): not a classification task")
        }
        return (classes, train, validation, test, majority)
    }

    static func linear(_ config: RunConfig) -> LinearBaseline {
        var linear = LinearBaseline()
        linear.seed = UInt64(config.seed)
        return linear
    }

    /// The stored config of the `method` baseline of fine-tuning config `config`: the keys
    /// that select its data (task, train size, evaluation and test examples, context) and, for the
    /// linear classifier, its seed and fitting settings. The majority class depends on
    /// the data alone, so all seeds share one majority run.
    public static func config(_ method: BaselineMethod, of config: RunConfig) -> JSONValue {
        var object: [String: JSONValue] = [
            "kind": "baseline", "baseline": .string(method.rawValue), "task": .string(config.task),
            "train_size": .int(Int64(config.trainSize)), "eval_examples": .int(Int64(config.evalExamples)),
            "context": .int(Int64(config.context)),
        ]
        // Only when set, so that the baselines stored before the key keep their hashes.
        if config.testExamples > 0 { object["test_examples"] = .int(Int64(config.testExamples)) }
        if method == .linear {
            let fit = linear(config)
            object["seed"] = .int(Int64(config.seed))
            object["epochs"] = .int(Int64(fit.epochs))
            object["lr"] = .double(Double(fit.learningRate))
            object["l2"] = .double(Double(fit.l2))
            object["features"] = .int(Int64(LinearBaseline.dimension))
        }
        return .object(object)
    }

    /// The method and fine-tuning data config of a stored baseline config (the inverse of
    /// `config(_:of:)`; the parent stands in as a placeholder, since data never depends on it).
    public static func decode(_ value: JSONValue) throws -> (BaselineMethod, RunConfig) {
        guard let name = value["baseline"]?.stringValue, let method = BaselineMethod(rawValue: name) else {
            throw InputError("baseline config: no known `baseline` (valid: \(BaselineMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var keys: [String: JSONValue] = ["kind": "finetune", "parent": .string(String(repeating: "0", count: 64))]
        for key in DataKeys.fineTuning + ["seed"] { keys[key] = value[key] }
        return (method, try ConfigResolver.resolve(preset: keys).config)
    }

    /// A baseline run resolved to its identity.
    public struct Planned {
        public let method: BaselineMethod
        public let config: RunConfig
        public let value: JSONValue
        public let fingerprint: String
        public let hash: String
    }

    public static func plan(_ method: BaselineMethod, of config: RunConfig, data: DataProvider) throws -> Planned {
        _ = try classification(config, data: data)
        let prepared = try data.prepare(config)
        let value = self.config(method, of: config)
        let hash = try RunIdentity.hash(config: value, parent: nil, datasetFingerprint: prepared.fingerprint,
                                        numerics: numericsVersion)
        return Planned(method: method, config: config, value: value, fingerprint: prepared.fingerprint, hash: hash)
    }

    /// What a baseline run records, all at step 0: accuracy on the validation and test
    /// examples (and, for the linear classifier, on as many train examples). Deterministic:
    /// computing it again gives the same numbers bit for bit (`reproduce` does).
    public static func scores(_ plan: Planned, data: DataProvider) throws -> [(split: String, acc: Double)] {
        let (classes, train, validation, test, majority) = try classification(plan.config, data: data)
        switch plan.method {
        case .majority:
            return [(Split.val, majority.validation), (Split.test, majority.test)]
        case .linear:
            let model = linear(plan.config).fit(train, classes: classes)
            return [(Split.train, model.accuracy(Array(train.prefix(plan.config.evalExamples)))),
                    (Split.val, model.accuracy(validation)), (Split.test, model.accuracy(test))]
        }
    }
}

extension Executor {
    /// The majority and linear baseline runs of fine-tuning config `config`, each a cache
    /// hit when completed, else fitted and stored now. Returns their hashes and outcomes.
    @discardableResult
    public func executeBaselines(of config: RunConfig) throws -> [RunResult] {
        try BaselineMethod.allCases.map { method in
            let plan = try Baselines.plan(method, of: config, data: data)
            let (record, _) = try store.insertRunIfAbsent(kind: .baseline, config: plan.value, parentHash: nil,
                                                          datasetFingerprint: plan.fingerprint,
                                                          numericsVersion: Baselines.numericsVersion)
            precondition(record.hash == plan.hash, "store and planner disagree on the baseline's hash")
            if record.status == .completed { return RunResult(hash: plan.hash, outcome: .cacheHit, resumedFrom: nil) }
            try stop.check()
            let environment = RunEnvironment.current(blasCore: Blas.coreName, vectorLevel: Blas.vectorKernels, threads: 1,
                                                     moerecVersion: Executor.version, gitCommit: gitCommit)
            let lease = try store.markRunning(hash: plan.hash, environment: environment)
            defer { lease.release() }
            let started = Date()
            do {
                let writer = try store.metricWriter(runHash: plan.hash)
                for (split, acc) in try Baselines.scores(plan, data: data) {
                    try writer.add(step: 0, split: split, name: MetricName.accuracy, value: acc)
                }
                try writer.flush()
                try store.markCompleted(hash: plan.hash, wallSeconds: Date().timeIntervalSince(started), steps: 0)
            } catch {
                try? store.markFailed(hash: plan.hash, reason: "\(error)", step: nil)
                throw error
            }
            log("baseline \(plan.hash.prefix(12)) \(method.rawValue) \(config.task) n=\(config.trainSize): stored")
            return RunResult(hash: plan.hash, outcome: .completed, resumedFrom: nil)
        }
    }
}
