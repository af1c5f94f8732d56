import Foundation
import MoeJSON

extension Store {
    // MARK: - Sweeps

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
    public func addTag(runHash: String, tag: String) throws {
        try Store.validateHash(runHash)
        guard (1...200).contains(tag.count) else { throw StoreError.invalidArgument("tag '\(tag)' must be 1 to 200 characters") }
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
