import Foundation
import MoeJSON

/// A run to record, checked and hashed (`RunIdentity.hash`) before any transaction opens.
public struct NewRun: Sendable {
    public let kind: RunKind
    public let parentHash: String?
    public let datasetFingerprint: String
    public let numericsVersion: Int
    public let status: RunStatus
    public let hash: String
    let configJSON: String

    /// `status` must be `.queued` or `.running`; the config a JSON object.
    public init(kind: RunKind, config: JSONValue, parentHash: String?, datasetFingerprint: String, numericsVersion: Int,
                status: RunStatus = .queued) throws {
        guard case .object = config else { throw StoreError.invalidConfig(reason: "\((try? config.canonicalString) ?? "the value") is not one") }
        // Canonical text of an object: one JSON object by construction.
        try self.init(kind: kind, objectText: try config.canonicalString, parentHash: parentHash,
                      datasetFingerprint: datasetFingerprint, numericsVersion: numericsVersion, status: status)
    }

    /// The same from the config's canonical JSON text (`JSONValue.canonicalString` of an
    /// object), which must be one JSON object: the schema leaves that to this check, which
    /// reads the text once without building it (`JSONValue.checkObjectSyntax`).
    public init(kind: RunKind, configJSON: String, parentHash: String?, datasetFingerprint: String, numericsVersion: Int,
                status: RunStatus = .queued) throws {
        do { try JSONValue.checkObjectSyntax(configJSON) } catch { throw StoreError.invalidConfig(reason: "\(error)") }
        try self.init(kind: kind, objectText: configJSON, parentHash: parentHash, datasetFingerprint: datasetFingerprint,
                      numericsVersion: numericsVersion, status: status)
    }

    private init(kind: RunKind, objectText configJSON: String, parentHash: String?, datasetFingerprint: String,
                 numericsVersion: Int, status: RunStatus) throws {
        guard status == .queued || status == .running else {
            throw StoreError.invalidArgument("a new run starts queued or running, not \(status.rawValue)")
        }
        guard numericsVersion >= 0 else { throw StoreError.invalidArgument("numerics version \(numericsVersion) is negative") }
        guard !datasetFingerprint.isEmpty else { throw StoreError.invalidArgument("the dataset fingerprint is empty") }
        if let parentHash { try Store.validateHash(parentHash) }
        self.kind = kind
        self.parentHash = parentHash
        self.datasetFingerprint = datasetFingerprint
        self.numericsVersion = numericsVersion
        self.status = status
        hash = try RunIdentity.hash(configJSON: configJSON, parent: parentHash, datasetFingerprint: datasetFingerprint,
                                    numerics: numericsVersion)
        self.configJSON = configJSON
    }
}

extension Store {
    // MARK: - Sweeps

    /// Creates a sweep and records, in one transaction, its runs (those not yet stored are
    /// queued), their membership in order and each run's tags: an interrupted or failed
    /// registration leaves no sweep and no queued run behind. Returns the sweep's id.
    @discardableResult
    public func registerSweep(name: String, specJSON: String, runs: [(run: NewRun, tags: [String])]) throws -> Int64 {
        guard !name.isEmpty else { throw StoreError.invalidArgument("a sweep needs a name") }
        _ = try JSONValue(parsing: specJSON)
        for tag in Set(runs.flatMap(\.tags)) { try Store.validateTag(tag) }
        return try withDB { db in
            try db.write {
                try db.query("INSERT INTO sweeps (name, spec_json) VALUES (?, ?)", [.text(name), .text(specJSON)])
                let sweepId = db.lastInsertRowID
                // Parents known to be stored: a sweep's many cells name a few.
                let parents = Set(runs.compactMap(\.run.parentHash))
                var stored = Set<String>()
                // Prepared once for the whole loop rather than looked up by their text for each run.
                let isStored = try db.prepare("SELECT 1 FROM runs WHERE hash = ?")
                let insert = try db.prepare(Store.insertRunSQL)
                let addMember = try db.prepare("INSERT INTO sweep_members (sweep_id, run_hash) VALUES (?, ?) ON CONFLICT DO NOTHING")
                func isInStore(_ hash: String) throws -> Bool { try isStored.withBindings([.text(hash)]) { try isStored.step() } }
                for (run, tags) in runs {
                    if let parent = run.parentHash, !stored.contains(parent) {
                        guard try isInStore(parent) else { throw StoreError.unknownParent(parent) }
                        stored.insert(parent)
                    }
                    // A run stored before (the sweep run again) is not inserted again: an INSERT
                    // that meets the conflict costs SQLite twice the lookup.
                    if try !isInStore(run.hash) { try insertRow(run, insert) }
                    if parents.contains(run.hash) { stored.insert(run.hash) }
                    try addMember.withBindings([.int(sweepId), .text(run.hash)]) { _ = try addMember.step() }
                    if !tags.isEmpty {
                        let id = try db.scalar("SELECT id FROM runs WHERE hash = ?", [.text(run.hash)])?.int ?? 0
                        for tag in tags {
                            try db.query("INSERT INTO tags (run_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING", [.int(id), .text(tag)])
                        }
                    }
                }
                return sweepId
            }
        }
    }

    /// Records a sweep (its name and grid spec as JSON) and returns its id.
    public func createSweep(name: String, specJSON: String) throws -> Int64 {
        guard !name.isEmpty else { throw StoreError.invalidArgument("a sweep needs a name") }
        _ = try JSONValue(parsing: specJSON)
        return try withDB { db in
            try db.write {
                try db.query("INSERT INTO sweeps (name, spec_json) VALUES (?, ?)", [.text(name), .text(specJSON)])
                return db.lastInsertRowID
            }
        }
    }

    /// Every sweep, oldest first.
    public func sweeps() throws -> [SweepRecord] {
        try sweepQuery("SELECT id, name, spec_json, created_at FROM sweeps ORDER BY id", [])
    }

    public func sweep(id: Int64) throws -> SweepRecord? {
        try sweepQuery("SELECT id, name, spec_json, created_at FROM sweeps WHERE id = ?", [.int(id)]).first
    }

    private func sweepQuery(_ sql: String, _ params: [SQLValue]) throws -> [SweepRecord] {
        try withDB { db in try db.read { try db.fetch(SweepRecord.self, sql, params) } }
    }

    /// Adds a run to a sweep; adding it again is a no-op. The run must already be stored.
    public func addSweepMember(sweepId: Int64, runHash: String) throws {
        try Store.validateHash(runHash)
        try withDB { db in
            try db.write {
                guard try db.scalar("SELECT 1 FROM sweeps WHERE id = ?", [.int(sweepId)]) != nil else {
                    throw StoreError.invalidArgument("no sweep with id \(sweepId)")
                }
                _ = try runIdAndStatus(db, hash: runHash)
                try db.query("INSERT INTO sweep_members (sweep_id, run_hash) VALUES (?, ?) ON CONFLICT DO NOTHING",
                             [.int(sweepId), .text(runHash)])
            }
        }
    }

    /// The run hashes of a sweep, in the order they were added.
    public func sweepMembers(sweepId: Int64) throws -> [String] {
        try withDB { db in
            try db.read {
                try db.fetch(SweepMemberRecord.self, "SELECT sweep_id, run_hash FROM sweep_members WHERE sweep_id = ? ORDER BY id",
                             [.int(sweepId)]).map(\.runHash)
            }
        }
    }

    // MARK: - Tags

    /// Tags a run (1 to 200 characters); tagging it again is a no-op.
    /// How long a tag may be, in Unicode scalars (the schema allows 200; 128 leaves room).
    public static let tagLength = 1...128

    /// Refuses an empty or over-long tag, or one holding a control character (a newline or
    /// escape would break `runs` listings and terminals), naming the tag.
    public static func validateTag(_ tag: String) throws {
        let length = tag.unicodeScalars.count
        guard tagLength.contains(length) else {
            throw StoreError.invalidTag(tag, reason: length == 0 ? "a tag cannot be empty"
                                        : "\(length) characters; a tag has \(tagLength.lowerBound) to \(tagLength.upperBound)")
        }
        if let control = tag.unicodeScalars.first(where: { $0.properties.generalCategory == .control }) {
            throw StoreError.invalidTag(tag, reason: "holds the control character U+\(String(format: "%04X", control.value))")
        }
    }

    public func addTag(runHash: String, tag: String) throws {
        try Store.validateHash(runHash)
        try Store.validateTag(tag)
        try withDB { db in
            try db.write {
                let (runId, _) = try runIdAndStatus(db, hash: runHash)
                try db.query("INSERT INTO tags (run_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING", [.int(runId), .text(tag)])
            }
        }
    }

    /// Removes a tag; removing one the run does not have is a no-op.
    public func removeTag(runHash: String, tag: String) throws {
        try Store.validateHash(runHash)
        try withDB { db in
            try db.write {
                let (runId, _) = try runIdAndStatus(db, hash: runHash)
                try db.query("DELETE FROM tags WHERE run_id = ? AND tag = ?", [.int(runId), .text(tag)])
            }
        }
    }

    /// A run's tags, sorted.
    public func tags(runHash: String) throws -> [String] {
        try Store.validateHash(runHash)
        return try withDB { db in
            try db.read {
                let (runId, _) = try runIdAndStatus(db, hash: runHash)
                return try db.fetch(TagRecord.self, """
                    SELECT r.hash AS run_hash, t.tag FROM tags t JOIN runs r ON r.id = t.run_id
                    WHERE t.run_id = ? ORDER BY t.tag
                    """, [.int(runId)]).map(\.tag)
            }
        }
    }
}
