import Foundation
import MoeCheckpoint
import MoeErrors
import MoeJSON
import MoeKernels
import MoeMetricNames
import MoeModel
import MoeStore
import MoeTrain

/// A run resolved down to its identity: ready to look up or execute.
public struct PlannedRun {
    public let config: RunConfig
    /// The resolved config as canonical JSON text, as the store keeps it.
    public let configJSON: String
    public let prepared: DataProvider.Prepared
    public let hash: String

    /// `configJSON` as a value (read when asked: a sweep plans 100,000 runs and needs the text).
    public var value: JSONValue {
        get throws { try JSONValue(parsing: configJSON) }
    }

    /// The config as a file that `moerec run FILE` resolves to this plan's hash (what a
    /// study hands a child process or a Slurm task). The canonical JSON leaves out a late
    /// key at its introduction value, which is what a stored config without the key means;
    /// a config file without it gets today's default instead (`forgetting_eval: parent`),
    /// a different run. So those keys are written in.
    public func runnableConfigJSON() throws -> String {
        guard case var .object(object) = try value else { return configJSON }
        var added = false
        for (key, introduced) in RunConfig.introductionValues where object[key] == nil {
            object[key] = .string(introduced)
            added = true
        }
        return added ? try JSONValue.object(object).canonicalString : configJSON
    }
}

public enum RunOutcome: Equatable {
    /// The hash was already completed: nothing was trained.
    case cacheHit
    case completed
    case failed(step: Int, reason: String)
    /// Stopped by a signal; the last checkpoint is the resume point.
    case interrupted(step: Int)
}

public struct RunResult {
    public let hash: String
    public let outcome: RunOutcome
    public let resumedFrom: Int?
}

/// Set from signal handlers (a plain store of the signal's number, safe there); the step
/// loop and the planners poll it between steps and cells.
public final class StopFlag: @unchecked Sendable {
    private var raised: Int32 = 0
    public init() {}
    /// Records the first signal that asked to stop (SIGINT, SIGTERM, …).
    public func raise(signal: Int32) { if raised == 0 { raised = signal } }
    public var isRaised: Bool { raised != 0 }
    /// The signal that stopped the work, nil while none has arrived.
    public var signal: Int32? { raised == 0 ? nil : raised }

    /// Throws `Interrupted` once a signal has arrived.
    public func check() throws {
        if let signal { throw Interrupted(signal: signal) }
    }
}

/// Work stopped by a signal: the process exits 128 + the signal (130 SIGINT, 143 SIGTERM).
/// Runs it stopped are marked interrupted and resume from their last checkpoint.
public struct Interrupted: MoeError {
    public let signal: Int32
    public init(signal: Int32) { self.signal = signal }
    public var exitMeaning: ExitMeaning { .interrupted(signal: signal) }
    public var description: String {
        "interrupted by \(signal == SIGTERM ? "SIGTERM" : signal == SIGINT ? "SIGINT" : "signal \(signal)"); run the same command again to resume"
    }
}

/// Executes runs against one store: cache hits, fresh runs, fine-tuning from a parent's
/// final checkpoint, and exact resumption of interrupted runs.
public final class Executor {
    /// Bumped whenever a code change alters results; part of every run hash.
    public static let numericsVersion = 2

    public let store: Store
    public let objects: ObjectStore
    public let data: DataProvider
    public let threads: Int
    public var log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    public var progress: ((String, MoeTrain.Progress) -> Void)?
    public var stop = StopFlag()
    public var gitCommit: String?

    public init(store: Store, threads: Int, data: DataProvider = DataProvider()) throws {
        self.store = store
        let dir = URL(fileURLWithPath: store.path).deletingLastPathComponent()
        objects = ObjectStore(root: dir.appendingPathComponent("objects"))
        self.threads = threads
        self.data = data
        try Blas.load()
        Blas.threads = threads
    }

    /// Changes the worker thread count for the runs that follow (recorded with each run;
    /// results do not depend on it).
    public func setThreads(_ n: Int) { Blas.threads = n }

    public static func objectsDirectory(forStore path: String) -> URL {
        URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("objects")
    }

    // MARK: Planning

    /// Resolves the parent (a hash prefix, or a config file that is planned and run first),
    /// inherits the architecture from it, loads the data and computes the run hash.
    public func plan(_ input: RunConfig, explicit: Set<String> = []) throws -> PlannedRun {
        try Executor.plan(input, explicit: explicit, store: store, data: data) { parentPlan, child, childExplicit in
            // Everything checkable without the parent's weights is checked before it trains.
            try Executor.precheck(child, parent: parentPlan.config, explicit: childExplicit)
            let result = try execute(parentPlan)
            guard result.outcome == .completed || result.outcome == .cacheHit else {
                throw InputError("parent \(child.parent ?? "") did not complete (\(result.outcome))")
            }
        }
    }

    /// What `--dry-run` shows: the plan of `input` and, when its parent is a config file,
    /// the parent's plan, first. Nothing is trained or written; `store` nil stands for a
    /// store that does not exist yet.
    /// A sweep cell's `parent` config stands in for the parent config file.
    public static func preview(_ input: RunConfig, explicit: Set<String> = [], parent: RunConfig? = nil, store: Store?,
                               data: DataProvider) throws -> [PlannedRun] {
        var plans: [PlannedRun] = []
        var config = input, explicit = explicit
        var known: [String: KnownParent] = [:]
        // No pre-check here: nothing trains before the plan below, which inherits the
        // parent's architecture and validates just as the pre-check would.
        if let parent {
            let parentPlan = try preview(parent, store: store, data: data).last!
            plans.append(parentPlan)
            known[parentPlan.hash] = KnownParent(hash: parentPlan.hash, value: try parentPlan.value)
            config.parent = parentPlan.hash
            explicit.insert("parent")
        }
        let plan = try Executor.plan(config, explicit: explicit, store: store, data: data, known: known) { parentPlan, _, _ in
            plans.append(parentPlan)
        }
        return plans + [plan]
    }

    /// The planning both share. A parent given as a config file is planned recursively and
    /// handed to `parentFromFile` (which runs it, or only records it), and the architecture
    /// is inherited from its config; a parent given as a hash must be a completed
    /// pretraining run in `store` (or, for a preview, among the `known` plans).
    static func plan(_ input: RunConfig, explicit: Set<String>, store: Store?, data: DataProvider,
                     known: [String: KnownParent] = [:],
                     parentFromFile: (PlannedRun, RunConfig, Set<String>) throws -> Void) throws -> PlannedRun {
        var config = input
        if config.isFinetune {
            guard let parentRef = config.parent else { throw InputError("parent: a fine-tuning run needs parent=HASH or parent=CONFIG_FILE") }
            let parentHash: String
            let parentValue: JSONValue
            if ConfigResolver.isConfigPath(parentRef) {
                let (parentConfig, parentExplicit) = try ConfigResolver.resolve(file: parentRef)
                guard !parentConfig.isFinetune else {
                    throw InputError("parent=\(parentRef): the config is a finetune run, not pretraining")
                }
                let parentPlan = try plan(parentConfig, explicit: parentExplicit, store: store, data: data,
                                          parentFromFile: parentFromFile)
                try parentFromFile(parentPlan, config, explicit)
                parentHash = parentPlan.hash
                parentValue = try parentPlan.value
            } else if let plan = known[parentRef] {
                parentHash = plan.hash
                parentValue = plan.value
            } else {
                let parent = try storedParent(parentRef, store: store)
                parentHash = parent.hash
                parentValue = parent.value
            }
            var merged = try Executor.inheritArchitecture(config, from: parentValue, explicit: explicit)
            merged["parent"] = .string(parentHash)
            config = try ConfigResolver.decode(merged)
        }
        // With the parent's architecture inherited, validation also refuses a regime that
        // would train nothing on it, before anything is written.
        do { try config.validate() } catch { throw InputError("\(error)") }
        let value = try ConfigResolver.value(of: config)
        let configJSON = try value.canonicalString
        let prepared = try data.prepare(config)
        let hash = try RunIdentity.hash(configJSON: configJSON, parent: config.parent, datasetFingerprint: prepared.fingerprint,
                                        numerics: Executor.numericsVersion)
        return PlannedRun(config: config, configJSON: configJSON, prepared: prepared, hash: hash)
    }

    /// A parent named by hash (or a unique prefix) or config file, with its resolved config.
    public struct KnownParent {
        public let hash: String
        public let value: JSONValue
    }

    /// The completed pretraining run `ref` (a hash or unique prefix) names in `store`.
    public static func storedParent(_ ref: String, store: Store?) throws -> KnownParent {
        guard let store else { throw InputError("parent=\(ref): no such run (the store does not exist yet)") }
        let hash: String
        do { hash = try store.resolve(prefix: ref) } catch {
            throw InputError("parent=\(ref): \(error)")
        }
        guard let parent = try store.run(hash: hash) else { throw InputError("parent=\(ref): no such run") }
        guard parent.kind == .pretrain else { throw InputError("parent=\(ref): run \(hash.prefix(12)) is a \(parent.kind.rawValue) run, not pretraining") }
        if let source = parent.importSource {
            throw InputError("parent=\(ref): run \(hash.prefix(12)) was imported (\(source)) and has no checkpoint to fine-tune from")
        }
        guard parent.status == .completed else {
            throw InputError("parent=\(ref): run \(hash.prefix(12)) is \(parent.status.rawValue), not completed")
        }
        return KnownParent(hash: hash, value: try JSONValue(parsing: parent.configJSON))
    }

    /// The plan of a config whose parent (if any) is among `known` (by the reference the
    /// config gives), without the store: what a study plans its cells with, in parallel.
    public static func plan(_ input: RunConfig, explicit: Set<String>, known: [String: KnownParent],
                            data: DataProvider) throws -> PlannedRun {
        try plan(input, explicit: explicit, store: nil, data: data, known: known) { _, _, _ in
            preconditionFailure("a study cell names its parent by hash")
        }
    }

    /// Checks a config without the store or data: validation, for fine-tuning with the
    /// parent's architecture inherited when the parent config is known. Sweeps and
    /// parent-first runs call it before anything is trained or written.
    public static func precheck(_ input: RunConfig, parent: RunConfig?, explicit: Set<String> = []) throws {
        var config = input
        if config.isFinetune {
            if let parent {
                config = try ConfigResolver.decode(try inheritArchitecture(config, from: try ConfigResolver.value(of: parent),
                                                                           explicit: explicit))
            }
            // A parent not yet in the store stands in as a well-formed placeholder hash.
            if config.parent.map(ConfigResolver.isConfigPath) ?? true { config.parent = String(repeating: "0", count: 64) }
        }
        do { try config.validate() } catch { throw InputError("\(error)") }
    }

    /// The config as a JSON object with the parent's architecture keys; an explicitly given
    /// different value is a mistake, not an override.
    static func inheritArchitecture(_ config: RunConfig, from parentValue: JSONValue, explicit: Set<String>) throws
        -> [String: JSONValue] {
        var merged = try ConfigResolver.value(of: config).objectValue ?? [:]
        for key in RunConfig.architectureKeys {
            guard let inherited = parentValue[key] else { continue }
            if explicit.contains(key), let mine = merged[key], mine != inherited {
                throw InputError("\(key)=\(mine.display): a fine-tuning run inherits \(key)=\(inherited.display) from its parent")
            }
            merged[key] = inherited
        }
        return merged
    }

    // MARK: Execution

    /// The store row of a planned run (queued), for registering many at once.
    public static func newRun(_ plan: PlannedRun) throws -> NewRun {
        let run = try newRun(config: plan.config, configJSON: plan.configJSON, prepared: plan.prepared)
        precondition(run.hash == plan.hash, "store and planner disagree on the run hash")
        return run
    }

    /// The store's new run of a resolved config, its canonical text and its data.
    static func newRun(config: RunConfig, configJSON: String, prepared: DataProvider.Prepared) throws -> NewRun {
        try NewRun(kind: config.isFinetune ? .finetune : .pretrain, configJSON: configJSON, parentHash: config.parent,
                   datasetFingerprint: prepared.fingerprint, numericsVersion: Executor.numericsVersion)
    }

    /// Records the run as queued (if it is new) without training it.
    @discardableResult
    public func register(_ plan: PlannedRun) throws -> RunRecord {
        let run = try Executor.newRun(plan)
        return try store.insertRunIfAbsent(kind: run.kind, config: try plan.value, parentHash: run.parentHash,
                                           datasetFingerprint: run.datasetFingerprint, numericsVersion: run.numericsVersion).record
    }

    /// Trains the run (or resumes it) unless it is completed, or failed in training: a
    /// diverging run fails again the same way, so its failure is the result. A run that
    /// failed outside the step loop (recorded without a step: the objects directory could
    /// not be written, a checkpoint could not be read) is tried again.
    public func execute(_ plan: PlannedRun) throws -> RunResult {
        let record = try register(plan)
        switch record.status {
        case .completed:
            return RunResult(hash: plan.hash, outcome: .cacheHit, resumedFrom: nil)
        case .failed:
            if let step = record.failureStep {
                return RunResult(hash: plan.hash, outcome: .failed(step: step, reason: record.failureReason ?? "failed"),
                                 resumedFrom: nil)
            }
        default:
            break
        }
        let environment = RunEnvironment.current(blasCore: Blas.coreName, vectorLevel: Blas.vectorKernels, threads: Blas.threads,
                                                 moerecVersion: Executor.version, gitCommit: gitCommit)
        let lease: RunLease
        do {
            lease = try store.markRunning(hash: plan.hash, environment: environment)
        } catch {
            // Another process may have finished this very run while we waited for its lock.
            if let now = try store.run(hash: plan.hash), now.status == .completed {
                return RunResult(hash: plan.hash, outcome: .cacheHit, resumedFrom: nil)
            }
            throw error
        }
        defer { lease.release() }
        do {
            return try train(plan, record: record)
        } catch {
            // The run started and cannot go on: it is failed with the reason now, not left
            // running for the next store open to call interrupted. (If the store itself
            // cannot be written, that is what the error says and the row stays as it is.)
            try? store.markFailed(hash: plan.hash, reason: "\(error)", step: nil)
            throw error
        }
    }

    /// The manifest of a parent's last checkpoint, the parameters a fine-tuning run starts from.
    private func parentManifest(_ parent: String) throws -> CheckpointManifest {
        guard let checkpoint = try store.latestCheckpoint(runHash: parent) else {
            throw InputError("parent \(parent.prefix(12)) has no checkpoint")
        }
        return try CheckpointManifest(json: checkpoint.manifestJSON)
    }

    /// The experts an expert-specialized regime trains, scored on the parameters the trainer
    /// holds (the parent's): `esft-gate` and `esft-token` by ESFT's top-p rule on their score;
    /// `random-experts` as many per layer as `esft-gate` takes, drawn by the run's seed.
    /// Every expert's two scores and whether it trains are recorded (split info, step 0), so
    /// `show`, `diff` and `reproduce` see the choice.
    static func selectExperts(trainer: Trainer, config: RunConfig, sink: MetricSink) throws -> ExpertSelection {
        let scores = trainer.scoreExperts(sampleTokens: config.esftSampleTokens)
        let byGate = try scores.selection(.gate, topP: config.esftTopP)
        let selection: ExpertSelection
        switch config.regime {
        case .esftToken: selection = try scores.selection(.token, topP: config.esftTopP)
        case .randomExperts:
            selection = ExpertSelection.random(counts: byGate.experts.map(\.count), experts: config.experts, seed: UInt64(config.seed))
        default: selection = byGate
        }
        let gate = scores.scores(.gate), token = scores.scores(.token)
        for (l, layer) in trainer.model.config.sparseLayers.enumerated() {
            for e in 0..<config.experts {
                sink.record(step: 0, split: Split.info, name: MetricName.esft(layer: layer, "gate", expert: e), value: gate[l][e])
                sink.record(step: 0, split: Split.info, name: MetricName.esft(layer: layer, "token", expert: e), value: token[l][e])
                sink.record(step: 0, split: Split.info, name: MetricName.esft(layer: layer, MetricName.esftSelected, expert: e),
                            value: selection.experts[l].contains(e) ? 1 : 0)
            }
        }
        return selection
    }

    /// The forgetting probe of a fine-tuning run with `forgetting_eval: parent`: the parent's
    /// config, corpus and parameters; nil otherwise.
    private func forgettingProbe(config: RunConfig) throws -> ForgettingProbe? {
        guard config.isFinetune, config.forgettingEval == .parent, let parent = config.parent else { return nil }
        guard let record = try store.run(hash: parent) else { throw InputError("parent \(parent.prefix(12)) is not in the store") }
        let parentConfig = try ConfigResolver.decode(try JSONValue(parsing: record.configJSON).objectValue ?? [:])
        let corpus = try data.prepare(parentConfig).data
        let manifest = try parentManifest(parent)
        return try ForgettingProbe(parentConfig: parentConfig, corpus: corpus) { trainer in
            try restore(trainer: trainer, from: manifest, optimizer: false)
        }
    }

    /// The part of `execute` that runs under the run's lease.
    private func train(_ plan: PlannedRun, record: RunRecord) throws -> RunResult {
        let config = plan.config
        let started = Date()
        let sink = try StoreSink(store: store, runHash: plan.hash)
        let trainer = try Trainer(config: config, data: plan.prepared.data, sink: sink)
        var resumedFrom: Int? = nil
        var previousWall = 0.0
        var parentLoaded = false
        if config.regime.selectsExperts, let parent = config.parent {
            // The experts are chosen on the parent's parameters, before a resumed run's own
            // checkpoint (whose optimizer moments exist for the chosen experts only) is read.
            try restore(trainer: trainer, from: try parentManifest(parent), optimizer: false)
            parentLoaded = true
            try trainer.trainExperts(try Executor.selectExperts(trainer: trainer, config: config, sink: sink))
        }
        if let checkpoint = try store.latestCheckpoint(runHash: plan.hash) {
            let manifest = try CheckpointManifest(json: checkpoint.manifestJSON)
            try restore(trainer: trainer, from: manifest, optimizer: true)
            resumedFrom = manifest.step
            trainer.restoreValidation(try store.metrics(runHash: plan.hash, name: MetricName.accuracy, split: Split.val))
            previousWall = record.wallSeconds ?? 0
            log("resuming \(plan.hash.prefix(12)) from its checkpoint at step \(manifest.step)")
        } else if let parent = config.parent, !parentLoaded {
            try restore(trainer: trainer, from: try parentManifest(parent), optimizer: false)
        }
        // Facts about the run that reports need and the config alone does not give.
        let total = trainer.model.layout.tensors.reduce(0) { $0 + $1.count }
        sink.record(step: 0, split: Split.info, name: MetricName.parameters, value: Double(total))
        sink.record(step: 0, split: Split.info, name: MetricName.trainableFraction, value: trainer.trainableFraction)
        if let majority = plan.prepared.majorityAccuracy {
            sink.record(step: 0, split: Split.info, name: MetricName.majorityAccuracy, value: majority)
        }
        trainer.onCheckpoint = { [unowned self] step, isLast in
            // Optimizer moments exist to resume; a completed run's final checkpoint keeps parameters only.
            try self.checkpoint(trainer: trainer, hash: plan.hash, step: step, configJSON: plan.configJSON,
                                withOptimizer: !isLast)
            try self.store.recordProgress(hash: plan.hash, steps: step)
        }
        trainer.onProgress = { [weak self] p in self?.progress?(String(plan.hash.prefix(12)), p) }
        let stop = self.stop
        trainer.shouldStop = { stop.isRaised }
        // Forgetting: the body before the first step (the parent's, or on resume the point
        // already stored) and after the last, on the parent's own validation text.
        let probe = try forgettingProbe(config: config)
        var before: Double?
        if let probe, trainer.step == 0 {
            before = probe.loss(of: trainer.model, shouldStop: trainer.shouldStop)
            if let before { sink.record(step: 0, split: Split.val, name: MetricName.parentLMLoss, value: before) }
        }
        var outcome = try trainer.run()
        if let probe, case let .completed(steps) = outcome {
            if before == nil { before = try store.metrics(runHash: plan.hash, name: MetricName.parentLMLoss, split: Split.val).first { $0.step == 0 }?.value }
            if let after = probe.loss(of: trainer.model, shouldStop: trainer.shouldStop), let before {
                sink.record(step: steps, split: Split.val, name: MetricName.parentLMLoss, value: after)
                sink.record(step: steps, split: Split.info, name: MetricName.forgetting, value: after - before)
            } else {
                outcome = .stopped(step: steps)
            }
        }
        try sink.flush()
        let wall = previousWall + Date().timeIntervalSince(started)
        switch outcome {
        case let .completed(steps):
            try store.markCompleted(hash: plan.hash, wallSeconds: wall, steps: steps)
            return RunResult(hash: plan.hash, outcome: .completed, resumedFrom: resumedFrom)
        case let .failed(step, reason):
            try store.markFailed(hash: plan.hash, reason: reason, step: step)
            return RunResult(hash: plan.hash, outcome: .failed(step: step, reason: reason), resumedFrom: resumedFrom)
        case let .stopped(step):
            try store.markInterrupted(hash: plan.hash, reason: "stopped by signal after step \(step)")
            return RunResult(hash: plan.hash, outcome: .interrupted(step: step), resumedFrom: resumedFrom)
        }
    }

    public static var version: String { "0.1.0" }

    // MARK: Checkpoints

    /// Checkpoint entries holding the parameters of the selected step (`test_eval: selected`)
    /// are named with this prefix and stored with the optimizer state.
    static let selectedPrefix = "selected/"

    func checkpoint(trainer: Trainer, hash: String, step: Int, configJSON: String, withOptimizer: Bool) throws {
        let model = trainer.model, opt = trainer.optimizer
        /// The model's tensors as laid out from `base`, named with `prefix`.
        func parameters(_ base: UnsafePointer<Float>, prefix: String = "") -> [NamedTensor] {
            model.layout.tensors.map { t in
                NamedTensor(name: prefix + t.name, shape: t.shape, group: t.group.rawValue,
                            values: UnsafeBufferPointer(start: base + t.offset, count: t.count))
            }
        }
        let tensors = parameters(model.params.base)
        var moments: [NamedTensor] = []
        // `test_eval: selected`: the parameters of the best validation step so far, which
        // the evaluation after training needs (identical tensors are stored once).
        if withOptimizer, let kept = trainer.selectedParameters, trainer.bestValidation != nil {
            moments += parameters(kept.baseAddress!, prefix: Executor.selectedPrefix)
        }
        for (slice, off) in opt.slots where withOptimizer {
            let group = model.layout.tensors[slice.tensor].group.rawValue
            moments.append(NamedTensor(name: slice.name + ".m", shape: slice.shape, group: group,
                                       values: UnsafeBufferPointer(start: opt.m.base + off, count: slice.count)))
            moments.append(NamedTensor(name: slice.name + ".v", shape: slice.shape, group: group,
                                       values: UnsafeBufferPointer(start: opt.v.base + off, count: slice.count)))
        }
        let (manifest, _) = try writeCheckpoint(objects: objects, runHash: hash, step: step, tensors: tensors,
                                                optimizer: moments, optimizerStep: opt.t,
                                                state: ["step": String(step)], configJSON: configJSON)
        let blobs = (manifest.tensors + manifest.optimizer).map {
            BlobRecord(sha256: $0.sha256, rawSize: Int64($0.rawSize), storedSize: Int64($0.storedSize),
                       location: objects.relativePath(for: $0.sha256))
        }
        _ = try store.recordCheckpoint(runHash: hash, step: step, manifestJSON: manifest.jsonString(), blobs: blobs)
    }

    /// Loads parameters (every tensor the model and manifest share, so a fine-tuning run
    /// takes all but its new head from the parent) and, when resuming, the optimizer state.
    func restore(trainer: Trainer, from manifest: CheckpointManifest, optimizer: Bool) throws {
        let model = trainer.model, opt = trainer.optimizer
        var byName: [String: (UnsafeMutablePointer<Float>, Int)] = [:]
        /// Reads the model's tensors, named with `prefix`, into the layout from `base`.
        func bindParameters(_ base: UnsafeMutablePointer<Float>, prefix: String = "") {
            for t in model.layout.tensors { byName[prefix + t.name] = (base + t.offset, t.count) }
        }
        bindParameters(model.params.base)
        if optimizer {
            for (slice, off) in opt.slots {
                byName[slice.name + ".m"] = (opt.m.base + off, slice.count)
                byName[slice.name + ".v"] = (opt.v.base + off, slice.count)
            }
            if let kept = trainer.selectedParameters { bindParameters(kept.baseAddress!, prefix: Executor.selectedPrefix) }
        }
        try readCheckpoint(objects: objects, manifest: manifest) { entry in
            guard let (p, n) = byName[entry.name], n == entry.elementCount else { return nil }
            return UnsafeMutableBufferPointer(start: p, count: n)
        }
        if optimizer {
            opt.t = manifest.optimizerStep
            trainer.step = manifest.step
        }
    }
}

/// The store as the trainer's metric sink: points are buffered and written in batched
/// transactions at each evaluation and checkpoint.
final class StoreSink: MetricSink {
    let writer: MetricWriter
    private var pending: Error?
    init(store: Store, runHash: String) throws { writer = try store.metricWriter(runHash: runHash) }
    func record(step: Int, split: String, name: String, value: Double) {
        // `add` may write a full batch; its error is kept and rethrown by the next flush,
        // which the trainer calls after every evaluation and before every checkpoint.
        do { try writer.add(step: step, split: split, name: name, value: value) } catch { pending = pending ?? error }
    }
    func flush() throws {
        if let pending { throw pending }
        try writer.flush()
    }
}
