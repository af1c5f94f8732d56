import Foundation

/// One numbered schema migration. `sql` is identical to `schema/<fileName>`.
public struct Migration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let sql: String
    /// The migration rebuilds a table that others reference: it runs with foreign keys off
    /// (a pragma that only takes effect outside a transaction), and its transaction checks
    /// every foreign key before it commits.
    public let rebuildsTables: Bool

    init(version: Int, name: String, sql: String, rebuildsTables: Bool = false) {
        self.version = version
        self.name = name
        self.sql = sql
        self.rebuildsTables = rebuildsTables
    }

    /// The file in `schema/` that holds the same text, e.g. `001_init.sql`.
    public var fileName: String {
        let number = String(version)
        return String(repeating: "0", count: max(0, 3 - number.count)) + number + "_" + name + ".sql"
    }
}

/// The migrations this build knows, and the runner that applies them.
public enum Migrations {
    /// In order of version, starting at 1, without gaps.
    public static let all: [Migration] = [
        Migration(version: 1, name: "init", sql: sql001Init),
        Migration(version: 2, name: "baseline_runs", sql: sql002BaselineRuns, rebuildsTables: true),
        Migration(version: 3, name: "environment", sql: sql003Environment),
        Migration(version: 4, name: "imported_runs", sql: sql004ImportedRuns),
        Migration(version: 5, name: "runs_checked_by_writers", sql: sql005RunsCheckedByWriters, rebuildsTables: true),
    ]

    public static var latestVersion: Int { all.last?.version ?? 0 }

    static let createLedger = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at TEXT NOT NULL
        )
        """

    /// Brings the store up to `latestVersion` and returns the versions it applied.
    ///
    /// A store that is already current is only read, never written. Otherwise each missing
    /// migration runs in its own BEGIN IMMEDIATE transaction together with its ledger row,
    /// and the transaction first re-checks the ledger: two processes opening a fresh store at
    /// once serialise on the write lock and the second finds the work done.
    static func migrate(_ db: Connection, through target: Int = latestVersion) throws -> [Int] {
        let recorded = try db.read { try appliedVersions(db) }
        try checkKnown(recorded, db: db)
        if let recorded, recorded.keys.max() == latestVersion, recorded.count == all.count {
            return []
        }

        try db.write { try db.execute(createLedger) }
        var applied: [Int] = []
        for migration in all where migration.version <= target {
            if migration.rebuildsTables { try db.execute("PRAGMA foreign_keys = OFF") }
            defer { if migration.rebuildsTables { try? db.execute("PRAGMA foreign_keys = ON") } }
            let didApply: Bool = try db.write {
                let current = try appliedVersions(db) ?? [:]
                try checkKnown(current, db: db)
                if current[migration.version] != nil { return false }
                do {
                    try db.execute(migration.sql)
                } catch let error as StoreError {
                    switch error {
                    case .diskFull, .readOnly, .ioError, .corrupt, .busyTimeout: throw error
                    default:
                        throw StoreError.migrationFailed(version: migration.version, name: migration.name, reason: error.description)
                    }
                }
                if migration.rebuildsTables {
                    var broken = 0
                    try db.query("PRAGMA foreign_key_check") { _ in broken += 1 }
                    if broken > 0 {
                        throw StoreError.migrationFailed(version: migration.version, name: migration.name,
                                                         reason: "\(broken) rows would break a foreign key")
                    }
                }
                try db.query(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    [.int(Int64(migration.version)), .text(migration.name)])
                return true
            }
            if didApply { applied.append(migration.version) }
        }
        return applied
    }

    /// For a read-only open: true when the store has a ledger and no migration this build
    /// does not know, false for a database with no schema at all yet (a store being
    /// created); a database with other tables is not a moerec store.
    static func checkReadable(_ db: Connection, path: String) throws -> Bool {
        let recorded = try db.read { try appliedVersions(db) }
        guard let recorded, !recorded.isEmpty else {
            let objects = try db.read { try db.scalar("SELECT count(*) FROM sqlite_master")?.int ?? 0 }
            if objects == 0 || recorded != nil { return false }
            throw StoreError.notAStore(path: path)
        }
        try checkKnown(recorded, db: db)
        return true
    }

    /// version → name from the ledger, or nil when the store has no ledger yet.
    private static func appliedVersions(_ db: Connection) throws -> [Int: String]? {
        let exists = try db.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
        guard exists?.int == 1 else { return nil }
        var versions: [Int: String] = [:]
        try db.query("SELECT version, name FROM schema_migrations") { row in
            versions[Int(row.int(0) ?? 0)] = row.string(1) ?? ""
        }
        return versions
    }

    /// A store from a newer moerec, or one whose history disagrees with this build, is
    /// refused before anything is written to it.
    private static func checkKnown(_ recorded: [Int: String]?, db: Connection) throws {
        guard let recorded else { return }
        if let newest = recorded.keys.max(), newest > latestVersion {
            throw StoreError.schemaTooNew(path: db.path, storeVersion: newest, supportedVersion: latestVersion)
        }
        for migration in all {
            if let name = recorded[migration.version], name != migration.name {
                throw StoreError.migrationMismatch(version: migration.version, storeName: name, codeName: migration.name)
            }
        }
    }
}
