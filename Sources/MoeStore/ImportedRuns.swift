import Foundation
import MoeJSON

/// A run trained elsewhere, as an importer read it: its config, parent, final status and
/// metric points. Checked, fingerprinted and hashed before any transaction opens.
///
/// Its hash is `RunIdentity.hash` with the content fingerprint as `imported`: the same
/// config with the same logged content is the same run (a second import finds it stored),
/// and a run that logged anything differently is another run.
public struct ImportedRun: Sendable {
    /// One logged value. NaN is allowed here and stored as NULL, as moerec stores a
    /// diverged run's; whether to accept it is the importer's decision.
    public struct Point: Sendable, Equatable {
        public var step: Int
        public var split: String
        public var name: String
        public var value: Double

        public init(step: Int, split: String, name: String, value: Double) {
            self.step = step
            self.split = split
            self.name = name
            self.value = value
        }

        /// What makes a point unique in a run: its series (split, name) and step.
        public var key: String { "\(split)\u{0}\(name)\u{0}\(step)" }
    }

    /// Imported runs were not computed by any moerec numerics: version 0 keeps them out of
    /// every group of runs moerec trained.
    public static let numericsVersion = 0

    public let kind: RunKind
    public let configJSON: String
    public let parentHash: String?
    public let datasetFingerprint: String
    /// `completed`, `failed` or `interrupted`: an imported run has finished elsewhere.
    public let status: RunStatus
    public let failureReason: String?
    /// Format and location, e.g. "mlflow-file /data/mlruns run 1a2b…".
    public let source: String

    /// The format an `import_source` names first: run-log, trainer, mlflow-file, mlflow-sqlite.
    public static func format(ofSource source: String) -> String { String(source.prefix { $0 != " " }) }
    /// One point per key, in the order the source gave them.
    public let points: [Point]
    public let fingerprint: String
    public let hash: String
    /// The last step any point was logged at (0 for a run without points).
    public var stepsDone: Int { points.map(\.step).max() ?? 0 }

    public init(kind: RunKind, config: JSONValue, parentHash: String?, datasetFingerprint: String, status: RunStatus,
                failureReason: String? = nil, source: String, points: [Point]) throws {
        guard case .object = config else { throw StoreError.invalidArgument("an imported run's config must be a JSON object") }
        guard [.completed, .failed, .interrupted].contains(status) else {
            throw StoreError.invalidArgument("an imported run is completed, failed or interrupted, not \(status.rawValue)")
        }
        guard status != .failed || !(failureReason ?? "").isEmpty else { throw StoreError.invalidArgument("a failed run needs a reason") }
        guard (kind == .finetune) == (parentHash != nil) else {
            throw StoreError.invalidArgument("an imported fine-tuning run names its parent, any other kind has none")
        }
        if let parentHash { try Store.validateHash(parentHash) }
        guard !datasetFingerprint.isEmpty, !source.isEmpty else { throw StoreError.invalidArgument("an imported run needs a dataset and a source") }
        var seen = Set<String>()
        for p in points {
            guard p.step >= 0 else { throw StoreError.invalidArgument("metric \(p.split)/\(p.name) has negative step \(p.step)") }
            try MetricWriter.checkLengths(name: p.name, split: p.split)
            guard seen.insert(p.key).inserted else {
                throw StoreError.invalidArgument("metric \(p.split)/\(p.name) is logged twice at step \(p.step)")
            }
        }
        self.kind = kind
        configJSON = try config.canonicalString
        self.parentHash = parentHash
        self.datasetFingerprint = datasetFingerprint
        self.status = status
        self.failureReason = failureReason
        self.source = source
        self.points = points
        fingerprint = try ImportedRun.fingerprint(status: status, points: points)
        hash = try RunIdentity.hash(configJSON: configJSON, parent: parentHash, datasetFingerprint: datasetFingerprint,
                                    numerics: ImportedRun.numericsVersion, imported: fingerprint)
    }

    /// SHA-256 of the canonical JSON `{"points":[[split,name,step,value],…],"status":"…"}`,
    /// points sorted by (split, name, step), NaN written as null. `verify` recomputes it
    /// from what the store holds.
    public static func fingerprint(status: RunStatus, points: [Point]) throws -> String {
        let sorted = points.sorted { ($0.split, $0.name, $0.step) < ($1.split, $1.name, $1.step) }
        let rows = sorted.map { p in
            JSONValue.array([.string(p.split), .string(p.name), .int(Int64(p.step)), p.value.isNaN ? .null : .double(p.value)])
        }
        let content = JSONValue.object(["points": .array(rows), "status": .string(status.rawValue)])
        return RunIdentity.sha256Hex(try content.canonicalBytes)
    }
}

/// What an import did: the runs it added and the ones already stored (same hash).
public struct ImportSummary: Sendable, Equatable {
    public var added: [String] = []
    public var existing: [String] = []
    public var metricPoints = 0
    public init() {}
}

extension Store {
    // MARK: - Imported runs

    /// Records imported runs, parents before children, with their metric points, in one
    /// transaction: on any error nothing is written. A run whose hash is stored is left as
    /// it is (`existing`).
    public func importRuns(_ runs: [ImportedRun]) throws -> ImportSummary {
        try withDB { db in
            try db.write {
                var summary = ImportSummary()
                var stored = Set<String>()
                for run in runs {
                    if try stored.contains(run.hash) || fetchRun(db, hash: run.hash) != nil {
                        if stored.insert(run.hash).inserted { summary.existing.append(run.hash) }
                        continue
                    }
                    if let parent = run.parentHash, try !stored.contains(parent) && fetchRun(db, hash: parent) == nil {
                        throw StoreError.unknownParent(parent)
                    }
                    try db.query("""
                        INSERT INTO runs (hash, parent_hash, kind, status, config_json, dataset_fingerprint, numerics_version,
                                          finished_at, steps_done, failure_reason, import_source, import_fingerprint)
                        VALUES (?, ?, ?, ?, ?, ?, ?, \(Store.now), ?, ?, ?, ?)
                        """,
                        [.text(run.hash), run.parentHash.map { .text($0) } ?? .null, .text(run.kind.rawValue),
                         .text(run.status.rawValue), .text(run.configJSON), .text(run.datasetFingerprint),
                         .int(Int64(ImportedRun.numericsVersion)), .int(Int64(run.stepsDone)),
                         run.failureReason.map { .text($0) } ?? .null, .text(run.source), .text(run.fingerprint)])
                    let runId = db.lastInsertRowID
                    var ids: [String: (name: Int64, split: Int64)] = [:]
                    for p in run.points {
                        let key = "\(p.split)\u{0}\(p.name)"
                        if ids[key] == nil {
                            ids[key] = (try MetricWriter.intern(db, table: "metric_names", name: p.name),
                                        try MetricWriter.intern(db, table: "splits", name: p.split))
                        }
                        try db.query("INSERT INTO metrics (run_id, name_id, split, step, value) VALUES (?, ?, ?, ?, ?)",
                                     [.int(runId), .int(ids[key]!.name), .int(ids[key]!.split), .int(Int64(p.step)),
                                      p.value.isNaN ? .null : .double(p.value)])
                    }
                    summary.metricPoints += run.points.count
                    stored.insert(run.hash)
                    summary.added.append(run.hash)
                }
                return summary
            }
        }
    }
}
