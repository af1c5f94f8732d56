import Foundation
import MoeCheckpoint
import MoeErrors
import MoeJSON
import MoeKernels
import MoeMetricNames
import MoeStore
import MoeTrain

/// The outcome of re-executing a stored run.
public struct ReproduceReport {
    public struct Divergence: Equatable {
        public let step: Int, split: String, name: String
        public let stored: Double?, new: Double?
    }
    public let hash: String
    public let identical: Bool
    public let firstDivergence: Divergence?
    public let checkpointMatch: Bool
    public let storedDigest: String?, newDigest: String?
    /// Objects of the stored final checkpoint that are missing or do not hash to their name.
    public let corruptObjects: [String]
    public let pointsCompared: Int
    /// field → (stored, current) for environment fields that differ.
    public let environmentDiff: [(field: String, stored: String, current: String)]
    /// Recorded facts the re-execution does not confirm (step count, dataset fingerprint)
    /// and the stored run's inconsistencies (`StoreConsistency`); any makes it not identical.
    public let recordMismatches: [String]
}

/// Re-executes a completed run into a scratch store and compares it, point by point
/// and by final parameter digest, with what the store holds.
public final class Reproducer {
    let store: Store
    let objects: ObjectStore
    let data: DataProvider
    /// Raised by a signal: the re-execution stops after its current step, the scratch
    /// store is removed, and `reproduce` throws `Interrupted`.
    public let stop = StopFlag()

    public init(store: Store, data: DataProvider = DataProvider()) {
        self.store = store
        objects = ObjectStore(root: Executor.objectsDirectory(forStore: store.path))
        self.data = data
    }

    /// `threads` nil: use the thread count recorded with the run (results do not depend on
    /// it, but re-running as recorded is the plainest check).
    public func reproduce(hash: String, threads: Int?, log: @escaping (String) -> Void) throws -> ReproduceReport {
        guard let record = try store.run(hash: hash) else { throw InputError("no run \(hash)") }
        if let source = record.importSource {
            throw InputError("run \(hash.prefix(12)) was trained elsewhere and imported (\(source)): moerec has neither its code nor its checkpoints, so it cannot re-execute it; verify checks its imported content")
        }
        guard record.status == .completed else {
            throw InputError("run \(hash.prefix(12)) is \(record.status.rawValue); only completed runs can be reproduced")
        }
        if record.kind == .baseline { return try reproduceBaseline(record, log: log) }
        guard record.numericsVersion == Executor.numericsVersion else {
            throw CheckFailed("run \(hash.prefix(12)) was computed by numerics version \(record.numericsVersion); this moerec computes version \(Executor.numericsVersion) and cannot re-execute it bit for bit (a moerec commit of numerics version \(record.numericsVersion) can)")
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("moerec-reproduce-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let scratchStore = try Store(path: scratch.appendingPathComponent("moerec.sqlite").path)
        let runThreads = threads ?? record.environment.threads ?? 1
        let executor = try Executor(store: scratchStore, threads: runThreads, data: data)
        executor.log = log
        executor.stop = stop
        // Ancestors come from this store (verified on the way), not re-trained.
        if let parent = record.parentHash { try importRun(parent, into: scratchStore, executor: executor) }
        try stop.check()
        let config = try ConfigResolver.decode(try JSONValue(parsing: record.configJSON).objectValue ?? [:])
        let plan = try executor.plan(config)
        guard plan.hash == hash else {
            throw CheckFailed("re-planning the stored config gives hash \(plan.hash.prefix(12)), not \(hash.prefix(12)): the data (fingerprint \(plan.prepared.fingerprint.prefix(12)) vs stored \(record.datasetFingerprint.prefix(12))) or the numerics version changed")
        }
        log("re-executing \(hash.prefix(12)) with \(runThreads) thread(s) in \(scratch.path)")
        try stop.check()
        let result = try executor.execute(plan)
        try stop.check()
        guard result.outcome == .completed else { throw CheckFailed("re-execution ended \(result.outcome)") }

        let stored = try store.allMetrics(runHash: hash).filter { $0.split != Split.timing }
        let fresh = try scratchStore.allMetrics(runHash: hash).filter { $0.split != Split.timing }
        let divergence = Self.firstDivergence(stored, fresh)
        let storedManifest = try store.latestCheckpoint(runHash: hash).map { try CheckpointManifest(json: $0.manifestJSON) }
        let storedDigest = storedManifest?.parameterDigest
        // The digest covers object names; the objects themselves must still hash to them.
        let corrupt = storedManifest.map { verifyCheckpoint(objects: objects, manifest: $0) } ?? []
        for problem in corrupt { log("stored checkpoint object \(problem.sha256) is \(problem.kind): \(problem.error)") }
        let newDigest = try scratchStore.latestCheckpoint(runHash: hash).map { try CheckpointManifest(json: $0.manifestJSON).parameterDigest }
        let current = RunEnvironment.current(blasCore: Blas.coreName, vectorLevel: Blas.vectorKernels, threads: Blas.threads, moerecVersion: Executor.version,
                                             gitCommit: nil)
        var envDiff: [(String, String, String)] = []
        func compare(_ field: String, _ a: String?, _ b: String?) {
            if let a, let b, a != b { envDiff.append((field, a, b)) }
        }
        compare("blas_core", record.environment.blasCore, current.blasCore)
        if record.environment.vectorLevel != nil { compare("vector_level", record.environment.vectorLevel, current.vectorLevel) }
        compare("threads", record.environment.threads.map(String.init), current.threads.map(String.init))
        compare("moerec_version", record.environment.moerecVersion, current.moerecVersion)
        compare("cpu_model", record.environment.cpuModel, current.cpuModel)
        compare("host", record.environment.host, current.host)
        let match = storedDigest != nil && storedDigest == newDigest && corrupt.isEmpty
        // The run hash covers the fingerprint as the run was planned, so an edited
        // fingerprint column re-plans to the same hash: compare it with the data itself.
        var mismatches: [String] = []
        if record.datasetFingerprint != plan.prepared.fingerprint {
            mismatches.append("dataset_fingerprint: stored \(record.datasetFingerprint), the data hashes to \(plan.prepared.fingerprint)")
        }
        let freshRecord = try scratchStore.run(hash: hash)
        if let freshSteps = freshRecord?.stepsDone, freshSteps != record.stepsDone {
            mismatches.append("steps_done: stored \(record.stepsDone), re-execution \(freshSteps)")
        }
        let storedStep = try store.latestCheckpoint(runHash: hash)?.step
        let newStep = try scratchStore.latestCheckpoint(runHash: hash)?.step
        if storedStep != newStep {
            mismatches.append("final checkpoint step: stored \(storedStep.map(String.init) ?? "none"), re-execution \(newStep.map(String.init) ?? "none")")
        }
        mismatches += try StoreConsistency.check(store: store, runs: [record]).map(\.description)
        return ReproduceReport(hash: hash, identical: divergence == nil && match && mismatches.isEmpty, firstDivergence: divergence,
                               checkpointMatch: match, storedDigest: storedDigest, newDigest: newDigest,
                               corruptObjects: corrupt.map { "\($0.sha256) (\($0.kind))" },
                               pointsCompared: max(stored.count, fresh.count), environmentDiff: envDiff,
                               recordMismatches: mismatches)
    }

    /// A baseline run is re-fitted in memory and its scores compared bit for bit with the
    /// stored points; it has no checkpoint.
    func reproduceBaseline(_ record: RunRecord, log: (String) -> Void) throws -> ReproduceReport {
        guard record.numericsVersion == Baselines.numericsVersion else {
            throw CheckFailed("baseline run \(record.hash.prefix(12)) was computed by baseline numerics version \(record.numericsVersion); this moerec computes version \(Baselines.numericsVersion)")
        }
        let (method, config) = try Baselines.decode(try JSONValue(parsing: record.configJSON))
        let plan = try Baselines.plan(method, of: config, data: data)
        guard plan.hash == record.hash else {
            throw CheckFailed("re-planning the stored baseline config gives hash \(plan.hash.prefix(12)), not \(record.hash.prefix(12)): the data (fingerprint \(plan.fingerprint.prefix(12)) vs stored \(record.datasetFingerprint.prefix(12))) changed")
        }
        log("re-fitting baseline \(record.hash.prefix(12)) (\(method.rawValue))")
        try stop.check()
        let fresh = try Baselines.scores(plan, data: data).map {
            MetricPoint(runHash: record.hash, step: 0, split: $0.split, name: MetricName.accuracy, value: $0.acc)
        }
        let stored = try store.allMetrics(runHash: record.hash).filter { $0.split != Split.timing }
        let divergence = Self.firstDivergence(stored, fresh)
        var mismatches: [String] = []
        if record.datasetFingerprint != plan.fingerprint {
            mismatches.append("dataset_fingerprint: stored \(record.datasetFingerprint), the data hashes to \(plan.fingerprint)")
        }
        mismatches += try StoreConsistency.check(store: store, runs: [record]).map(\.description)
        return ReproduceReport(hash: record.hash, identical: divergence == nil && mismatches.isEmpty, firstDivergence: divergence,
                               checkpointMatch: true, storedDigest: nil, newDigest: nil, corruptObjects: [],
                               pointsCompared: max(stored.count, fresh.count), environmentDiff: [], recordMismatches: mismatches)
    }

    /// Points are compared in (step, split, name) order, values bit for bit; a point
    /// present on one side only is a divergence too.
    static func firstDivergence(_ a: [MetricPoint], _ b: [MetricPoint]) -> ReproduceReport.Divergence? {
        func key(_ p: MetricPoint) -> String { "\(p.split)\u{1}\(p.name)" }
        let sortedA = a.sorted { ($0.step, key($0)) < ($1.step, key($1)) }
        let sortedB = b.sorted { ($0.step, key($0)) < ($1.step, key($1)) }
        var i = 0, j = 0
        while i < sortedA.count || j < sortedB.count {
            guard i < sortedA.count else {
                let p = sortedB[j]; return .init(step: p.step, split: p.split, name: p.name, stored: nil, new: p.value)
            }
            guard j < sortedB.count else {
                let p = sortedA[i]; return .init(step: p.step, split: p.split, name: p.name, stored: p.value, new: nil)
            }
            let x = sortedA[i], y = sortedB[j]
            if x.step != y.step || key(x) != key(y) {
                let xFirst = (x.step, key(x)) < (y.step, key(y))
                let p = xFirst ? x : y
                return .init(step: p.step, split: p.split, name: p.name, stored: xFirst ? x.value : nil, new: xFirst ? nil : y.value)
            }
            if x.value.bitPattern != y.value.bitPattern {
                return .init(step: x.step, split: x.split, name: x.name, stored: x.value, new: y.value)
            }
            i += 1; j += 1
        }
        return nil
    }

    /// Copies a completed ancestor (recursively its own parent) with its final checkpoint
    /// into the scratch store; every object is re-read and hash-checked on the way.
    func importRun(_ hash: String, into scratch: Store, executor: Executor) throws {
        guard let record = try store.run(hash: hash), record.status == .completed else {
            throw CheckFailed("ancestor \(hash.prefix(12)) is missing or not completed in this store")
        }
        if let parent = record.parentHash { try importRun(parent, into: scratch, executor: executor) }
        let (inserted, _) = try scratch.insertRunIfAbsent(kind: record.kind, config: try JSONValue(parsing: record.configJSON),
                                                          parentHash: record.parentHash,
                                                          datasetFingerprint: record.datasetFingerprint,
                                                          numericsVersion: record.numericsVersion)
        guard inserted.hash == hash else { throw CheckFailed("ancestor \(hash.prefix(12)) does not re-hash to itself") }
        guard let checkpoint = try store.latestCheckpoint(runHash: hash) else {
            throw CheckFailed("ancestor \(hash.prefix(12)) has no checkpoint")
        }
        let manifest = try CheckpointManifest(json: checkpoint.manifestJSON)
        var blobs: [BlobRecord] = []
        for entry in manifest.tensors + manifest.optimizer {
            let bytes = try objects.get(sha256: entry.sha256, rawSize: entry.rawSize,
                                        context: ObjectContext(runHash: hash, tensorName: entry.name))
            let ref = try executor.objects.put(bytes)
            blobs.append(BlobRecord(sha256: ref.sha256, rawSize: Int64(ref.rawSize), storedSize: Int64(ref.storedSize),
                                    location: ref.relativePath))
        }
        let lease = try scratch.markRunning(hash: hash, environment: record.environment)
        _ = try scratch.recordCheckpoint(runHash: hash, step: checkpoint.step, manifestJSON: checkpoint.manifestJSON, blobs: blobs)
        try scratch.markCompleted(hash: hash, wallSeconds: record.wallSeconds ?? 0, steps: record.stepsDone)
        lease.release()
    }
}

/// A check that did not pass; the CLI exits 1 with this message.
public struct CheckFailed: MoeError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var exitMeaning: ExitMeaning { .checkFailed }
}
