import Foundation
import MoeJSON

// Checkpoint manifests and blob records. The bytes themselves (zlib objects under
// runs/objects/) belong to MoeCheckpoint; the store only records what exists where.

extension Store {
    static let checkpointColumns = "c.id, r.hash AS run_hash, c.step, c.manifest_json, c.created_at"

    /// Records a checkpoint of `runHash` at `step` and the blobs it uses, in one transaction.
    ///
    /// Blob rows are inserted unless already present (a tensor frozen by the regime is the
    /// parent's blob, recorded once); a present blob must agree on the raw size, or
    /// `.blobConflict`. Recording the same step again (a resumed run passing the step a
    /// second time) replaces that checkpoint's manifest and blob links.
    @discardableResult
    public func recordCheckpoint(runHash: String, step: Int, manifestJSON: String, blobs: [BlobRecord]) throws -> CheckpointRecord {
        try Store.validateHash(runHash)
        guard step >= 0 else { throw StoreError.invalidArgument("checkpoint step \(step) is negative") }
        _ = try JSONValue(parsing: manifestJSON)
        for blob in blobs {
            guard RunIdentity.isValidHash(blob.sha256) else { throw StoreError.invalidHash(blob.sha256) }
            guard blob.rawSize >= 0, blob.storedSize >= 0 else {
                throw StoreError.invalidArgument("blob \(blob.sha256) has a negative size")
            }
            guard !blob.location.isEmpty else { throw StoreError.invalidArgument("blob \(blob.sha256) has no location") }
        }
        return try withDB { db in
            try db.write {
                let (runId, status) = try runIdAndStatus(db, hash: runHash)
                if status == .completed { throw StoreError.runCompleted(runHash) }
                for blob in blobs {
                    try db.query("""
                        INSERT INTO blobs (sha256, raw_size, stored_size, location) VALUES (?, ?, ?, ?)
                        ON CONFLICT (sha256) DO NOTHING
                        """, [.text(blob.sha256), .int(blob.rawSize), .int(blob.storedSize), .text(blob.location)])
                    let recorded = try db.scalar("SELECT raw_size FROM blobs WHERE sha256 = ?", [.text(blob.sha256)])?.int
                    if let recorded, recorded != blob.rawSize {
                        throw StoreError.blobConflict(sha256: blob.sha256, recordedRawSize: recorded, newRawSize: blob.rawSize)
                    }
                }
                try db.query("""
                    INSERT INTO checkpoints (run_id, step, manifest_json) VALUES (?, ?, ?)
                    ON CONFLICT (run_id, step) DO UPDATE SET manifest_json = excluded.manifest_json, created_at = \(Store.now)
                    """, [.int(runId), .int(Int64(step)), .text(manifestJSON)])
                let checkpointId = try db.scalar("SELECT id FROM checkpoints WHERE run_id = ? AND step = ?",
                                                 [.int(runId), .int(Int64(step))])!.int!
                try db.query("DELETE FROM checkpoint_blobs WHERE checkpoint_id = ?", [.int(checkpointId)])
                for sha in Set(blobs.map(\.sha256)) {
                    try db.query("INSERT INTO checkpoint_blobs (checkpoint_id, sha256) VALUES (?, ?)",
                                 [.int(checkpointId), .text(sha)])
                }
                return try db.fetch(CheckpointRecord.self,
                                    "SELECT \(Store.checkpointColumns) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE c.id = ?",
                                    [.int(checkpointId)])[0]
            }
        }
    }

    /// The checkpoint with the highest step, or nil when the run has none.
    public func latestCheckpoint(runHash: String) throws -> CheckpointRecord? {
        try checkpoints(runHash: runHash, latestOnly: true).first
    }

    /// A run's checkpoints, by step.
    public func checkpoints(runHash: String) throws -> [CheckpointRecord] {
        try checkpoints(runHash: runHash, latestOnly: false)
    }

    private func checkpoints(runHash: String, latestOnly: Bool) throws -> [CheckpointRecord] {
        try Store.validateHash(runHash)
        return try withDB { db in
            try db.read {
                let (runId, _) = try runIdAndStatus(db, hash: runHash)
                let order = latestOnly ? "ORDER BY c.step DESC LIMIT 1" : "ORDER BY c.step"
                return try db.fetch(CheckpointRecord.self,
                                    "SELECT \(Store.checkpointColumns) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE c.run_id = ? \(order)",
                                    [.int(runId)])
            }
        }
    }

    /// The blobs one checkpoint uses, by SHA-256.
    public func blobs(forCheckpoint checkpointId: Int64) throws -> [BlobRecord] {
        try blobQuery("""
            SELECT b.sha256, b.raw_size, b.stored_size, b.location, b.created_at
            FROM checkpoint_blobs cb JOIN blobs b ON b.sha256 = cb.sha256
            WHERE cb.checkpoint_id = ? ORDER BY b.sha256
            """, [.int(checkpointId)])
    }

    /// The distinct blobs used by any checkpoint of a run, by SHA-256.
    public func blobs(forRun runHash: String) throws -> [BlobRecord] {
        try Store.validateHash(runHash)
        _ = try withDB { db in try db.read { try runIdAndStatus(db, hash: runHash) } }
        return try blobQuery("""
            SELECT DISTINCT b.sha256, b.raw_size, b.stored_size, b.location, b.created_at
            FROM runs r
            JOIN checkpoints c ON c.run_id = r.id
            JOIN checkpoint_blobs cb ON cb.checkpoint_id = c.id
            JOIN blobs b ON b.sha256 = cb.sha256
            WHERE r.hash = ? ORDER BY b.sha256
            """, [.text(runHash)])
    }

    /// Every blob record, by SHA-256 (what `verify` walks).
    public func allBlobs() throws -> [BlobRecord] {
        try blobQuery("SELECT sha256, raw_size, stored_size, location, created_at FROM blobs ORDER BY sha256", [])
    }

    /// One blob record, or nil.
    public func blob(sha256: String) throws -> BlobRecord? {
        guard RunIdentity.isValidHash(sha256) else { throw StoreError.invalidHash(sha256) }
        return try blobQuery("SELECT sha256, raw_size, stored_size, location, created_at FROM blobs WHERE sha256 = ?",
                             [.text(sha256)]).first
    }

    private func blobQuery(_ sql: String, _ params: [SQLValue]) throws -> [BlobRecord] {
        try withDB { db in try db.read { try db.fetch(BlobRecord.self, sql, params) } }
    }
}
