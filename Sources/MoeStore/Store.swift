import CSQLite
import Foundation
import MoeJSON
import MoeMetricNames

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The experiment store: one SQLite file (WAL mode) holding runs, metrics, checkpoint
/// manifests, blob records, sweeps and tags, plus a `locks/` directory beside it for run
/// leases.
///
/// Several processes may use one store at once; every write is a `BEGIN IMMEDIATE`
/// transaction retried on SQLITE_BUSY, so writers queue instead of failing with
/// "database is locked". Within a process, one `Store` may be shared between threads (its
/// calls are serialised by a lock); opening one `Store` per thread also works.
public final class Store: @unchecked Sendable {
    /// The database file, as given.
    public let path: String
    /// The directory holding the database file (and `locks/`).
    public let directory: String
    /// Migration versions this open applied (empty for a store that was already current).
    public let appliedMigrations: [Int]
    /// Runs this open found `running` with no live trainer and marked `interrupted`.
    public private(set) var interruptedOnOpen: [String] = []
    /// Whether this open may write.
    public let mode: Mode

    /// How a store is opened.
    public enum Mode: Sendable {
        /// Created if missing, migrated, and runs whose trainer died are marked interrupted.
        case readWrite
        /// The store must exist; nothing is written, created or migrated. A run whose trainer
        /// died is shown `interrupted` (as the next writer will record it) without being marked.
        case readOnly
    }

    let db: Connection
    /// Serialises use of `db` (a single SQLite connection) between threads.
    private let mutex = NSRecursiveLock()
    private var isClosed = false
    /// Leases taken through this store, released when their run is marked finished.
    private var leases: [String: RunLease] = [:]

    /// SQLite's busy handler waits this long for a lock before the retry loop steps in.
    public static let defaultBusyTimeout: Double = 30

    static let now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

    // MARK: - Opening

    /// `$MOEREC_STORE` when set and non-empty, else `runs/moerec.sqlite`.
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let path = environment["MOEREC_STORE"], !path.isEmpty { return path }
        return "runs/moerec.sqlite"
    }

    /// Opens (creating if needed) the store at `path`, migrates it, and marks as
    /// `interrupted` every `running` run whose trainer is gone.
    ///
    /// Nothing is written to a file that is not a moerec store: a non-SQLite file gives
    /// `StoreError.notADatabase`, another application's SQLite database `.notAStore`, a
    /// store from a newer moerec `.schemaTooNew`. An unwritable location gives `.readOnly`,
    /// a full disk `.diskFull`; all name the path.
    ///
    /// `mode: .readOnly` opens an existing store for reading: a missing path gives
    /// `.notFound` and nothing is created; a store on a read-only filesystem can be read.
    public init(path: String, mode: Mode = .readWrite, busyTimeout: Double = Store.defaultBusyTimeout) throws {
        guard !path.isEmpty else { throw StoreError.invalidArgument("the store path is empty") }
        self.path = path
        self.mode = mode
        let directory = (path as NSString).deletingLastPathComponent
        self.directory = directory.isEmpty ? "." : directory
        if mode == .readOnly {
            db = try Store.openForReading(path, busyTimeout: busyTimeout)
            appliedMigrations = []
            try presentRunsAsAWriterWould()
            OpenStores.shared.add(self)
            return
        }

        try Store.makeDirectories(self.directory, storePath: path)
        try Store.checkExistingFile(path)
        if access(self.directory, W_OK) != 0 { throw StoreError.readOnly(path: path) }
        if FileManager.default.fileExists(atPath: path), access(path, W_OK) != 0 {
            throw StoreError.readOnly(path: path)
        }

        let db = try Connection(path: path, busyTimeout: busyTimeout)
        self.db = db
        // A read first: SQLite validates the header here, before anything could be written.
        let objectCount = try db.read { try db.scalar("SELECT count(*) FROM sqlite_master")?.int ?? 0 }
        let hasLedger = try db.read {
            try db.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")?.int == 1
        }
        if objectCount > 0, !hasLedger { throw StoreError.notAStore(path: path) }

        // WAL lets readers (reports) run while a trainer writes; switching modes needs a
        // moment of exclusive access, hence the retry.
        let mode = try db.retryingBusy { try db.scalar("PRAGMA journal_mode = WAL")?.text?.lowercased() }
        guard mode == "wal" else {
            throw StoreError.cannotOpen(path: path, reason: "the filesystem does not support WAL mode (journal mode is \(mode ?? "unknown"))")
        }
        // NORMAL in WAL mode: a commit survives a process crash; only a power loss can drop
        // the last transactions, never corrupt the file.
        try db.execute("PRAGMA synchronous = NORMAL")
        try db.execute("PRAGMA foreign_keys = ON")
        // 32 MiB page cache: keeps the metric b-tree's hot pages in memory during ingestion.
        try db.execute("PRAGMA cache_size = -32768")

        appliedMigrations = try Migrations.migrate(db)
        try Store.makeDirectories(locksDirectory, storePath: path)
        interruptedOnOpen = try detectInterruptedRuns()
        OpenStores.shared.add(self)
    }

    deinit { close() }

    /// Creates a store database at `path` with the schema of migration `schemaVersion` and
    /// no later one, as an older moerec left it: for tests of the migrations that follow.
    package static func createDatabase(path: String, schemaVersion: Int) throws {
        let db = try Connection(path: path, busyTimeout: defaultBusyTimeout)
        try db.execute("PRAGMA foreign_keys = ON")
        _ = try Migrations.migrate(db, through: schemaVersion)
    }

    /// Runs statements on the database at `path` with foreign keys on and no migration:
    /// for tests that write a store as an older moerec did.
    package static func withRawDatabase(path: String, _ body: ((String) throws -> Void) throws -> Void) throws {
        let db = try Connection(path: path, busyTimeout: defaultBusyTimeout)
        try db.execute("PRAGMA foreign_keys = ON")
        try body { try db.execute($0) }
    }

    /// Opens an existing store read-only, checking it is a moerec store this build can read.
    private static func openForReading(_ path: String, busyTimeout: Double) throws -> Connection {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw StoreError.notFound(path: path) }
            throw StoreError.cannotOpen(path: path, reason: String(cString: strerror(code)))
        }
        try checkExistingFile(path)
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw StoreError.notAStore(path: path) }
        // A store another process is creating has no tables for a moment (it migrates right
        // after creating the file): wait a little for its schema before calling it foreign.
        let deadline = Date().addingTimeInterval(min(2, busyTimeout))
        while true {
            let db: Connection
            do {
                db = try readableConnection(path, busyTimeout: busyTimeout, access: .readOnly)
            } catch StoreError.readOnly(_), StoreError.cannotOpen(_, _) {
                // A WAL reader needs the -shm file; where it cannot be created (a read-only
                // filesystem or directory) nobody can be writing either, so SQLite may read
                // the file as immutable, without -shm or locks.
                db = try readableConnection(path, busyTimeout: busyTimeout, access: .immutable)
            }
            if try Migrations.checkReadable(db, path: path) { return db }
            db.close()
            guard Date() < deadline else { throw StoreError.notAStore(path: path) }
            usleep(20_000)
        }
    }

    /// A connection that has read the schema (SQLite opens files lazily: the first read is
    /// where a missing -shm or a damaged header shows).
    private static func readableConnection(_ path: String, busyTimeout: Double, access: Connection.Access) throws -> Connection {
        let db = try Connection(path: path, busyTimeout: busyTimeout, access: access)
        do {
            _ = try db.read { try db.scalar("SELECT count(*) FROM sqlite_master") }
        } catch {
            db.close()
            throw error
        }
        return db
    }

    /// A reader writes nothing, so a `running` run whose trainer is gone stays `running` in
    /// the file, and a store an older moerec wrote keeps its older columns; this connection
    /// sees such a run as `interrupted`, with the reason the next writer will record, and
    /// the columns later migrations added as NULL, through a temporary view `runs` that
    /// shadows the table (temporary objects live in memory, visible to this connection only).
    private func presentRunsAsAWriterWould() throws {
        var stale: [(hash: String, reason: String)] = []
        try db.read {
            stale = []
            try db.query("SELECT hash, pid FROM main.runs WHERE status = 'running' ORDER BY id") { row in
                let hash = row.string(0)!
                guard LockFile.isFree(lockPath(for: hash)) else { return }
                stale.append((hash, Store.endedReason(pid: row.int(1).map(Int.init))))
            }
        }
        var columns: [String] = []
        try db.query("SELECT name FROM pragma_table_info('runs', 'main') ORDER BY cid") { columns.append($0.string(0)!) }
        // A store an older moerec wrote lacks the columns later migrations added (a reader
        // does not migrate): they read as NULL.
        let missing = Store.runColumnsAddedLater.filter { !columns.contains($0) }
        guard !stale.isEmpty || !missing.isEmpty else { return }
        let select = columns.map { column -> String in
            switch column {
            case "status": return "CASE WHEN s.hash IS NULL THEN r.status ELSE 'interrupted' END AS status"
            case "failure_reason": return "coalesce(s.reason, r.failure_reason) AS failure_reason"
            default: return "r.\"\(column)\""
            }
        } + missing.map { "NULL AS \"\($0)\"" }
        try db.execute("CREATE TEMP TABLE stale_runs (hash TEXT PRIMARY KEY, reason TEXT NOT NULL)")
        for run in stale { try db.query("INSERT INTO temp.stale_runs VALUES (?, ?)", [.text(run.hash), .text(run.reason)]) }
        try db.execute("CREATE TEMP VIEW runs AS SELECT \(select.joined(separator: ", ")) FROM main.runs r LEFT JOIN temp.stale_runs s ON s.hash = r.hash")
    }

    static func endedReason(pid: Int?) -> String {
        "the training process" + (pid.map { " (pid \($0))" } ?? "") + " ended without finishing the run"
    }

    // MARK: - Backup

    /// Copies the database into a new file at `destination` with SQLite's online backup API:
    /// one consistent snapshot, taken while other processes may go on writing (in WAL mode
    /// the snapshot is a read, which blocks no writer). The copy is written under a
    /// temporary name beside `destination` and renamed, so `destination` is either absent
    /// or complete. An existing `destination` is refused.
    public func backup(to destination: String) throws {
        if FileManager.default.fileExists(atPath: destination) {
            throw StoreError.invalidArgument("backup destination '\(destination)' exists; it is not overwritten")
        }
        let temporary = destination + ".tmp-\(getpid())"
        try withDB { db in
            let target = try Connection(path: temporary, busyTimeout: 0)
            defer {
                target.close()
                unlink(temporary)
            }
            guard let backup = sqlite3_backup_init(target.handle, "main", db.handle, "main") else {
                throw target.mapError(sqlite3_errcode(target.handle))
            }
            // All pages in one step: a single read transaction, so a writer committing in
            // between cannot make the backup start over.
            var rc: Int32
            repeat {
                rc = sqlite3_backup_step(backup, -1)
                if rc == SQLITE_BUSY || rc == SQLITE_LOCKED { usleep(10_000) }
            } while rc == SQLITE_BUSY || rc == SQLITE_LOCKED
            let finished = sqlite3_backup_finish(backup)
            guard rc == SQLITE_DONE else { throw target.mapError(rc) }
            try target.check(finished)
            // The copy is in WAL mode like its source: fold its log in before renaming it.
            try target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            target.close()
            guard rename(temporary, destination) == 0 else {
                throw StoreError.cannotOpen(path: destination, reason: "cannot rename the copy into place: \(String(cString: strerror(errno)))")
            }
        }
    }

    // MARK: - Closing

    /// Ends the store's connection: a store that wrote first moves the write-ahead log into
    /// the database file (`wal_checkpoint(TRUNCATE)`), so the `.sqlite` file alone holds
    /// everything, then the leases are released. Idempotent; later calls on the store fail.
    /// `Store.closeAll()` does this for every open store (`exit` runs no deinitialisers).
    public func close() {
        mutex.lock()
        defer { mutex.unlock() }
        guard !isClosed else { return }
        isClosed = true
        if mode == .readWrite {
            // Best effort: a reader still inside a transaction keeps the log's last frames
            // until it ends (SQLite's own close checkpoints again when it is the last one), so
            // wait briefly rather than the full busy timeout.
            db.setBusyTimeout(0.25)
            try? db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        }
        db.close()
        for lease in leases.values { lease.release() }
        leases.removeAll()
        OpenStores.shared.remove(self)
    }

    /// Closes every store this process still has open (see `close`).
    public static func closeAll() {
        for store in OpenStores.shared.all() { store.close() }
    }

    /// `<store dir>/locks`, where run leases live.
    public var locksDirectory: String { (directory as NSString).appendingPathComponent("locks") }

    func lockPath(for hash: String) -> String {
        (locksDirectory as NSString).appendingPathComponent("\(hash).lock")
    }

    private static func makeDirectories(_ dir: String, storePath: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return }
            throw StoreError.cannotOpen(path: storePath, reason: "'\(dir)' exists and is not a directory")
        }
        let parent = (dir as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != dir { try makeDirectories(parent, storePath: storePath) }
        if mkdir(dir, 0o755) != 0 {
            let code = errno
            if code == EEXIST { return }
            if code == EROFS || code == EACCES || code == EPERM { throw StoreError.readOnly(path: storePath) }
            if code == ENOSPC || code == EDQUOT { throw StoreError.diskFull(path: storePath) }
            throw StoreError.cannotOpen(path: storePath, reason: "cannot create '\(dir)': \(String(cString: strerror(code)))")
        }
    }

    /// Refuses a file that is not an SQLite database before SQLite opens it. (SQLite itself
    /// would treat a short non-database file as an empty database and overwrite it on the
    /// first write.)
    private static func checkExistingFile(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { return }  // does not exist yet
        // Checked before SQLite sees the path: it would open a device or FIFO (and create
        // `<path>-journal` beside it).
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw StoreError.cannotOpen(path: path, reason: "it is a directory")
        default: throw StoreError.cannotOpen(path: path, reason: "it is not a regular file (a device, FIFO or socket)")
        }
        guard info.st_size > 0 else { return }  // an empty file is an empty database
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw StoreError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        defer { closeDescriptor(fd) }
        let magic = Array("SQLite format 3".utf8) + [0]
        // A few rereads: another process creating the store may be mid-way through writing
        // its first page. A foreign file fails every time.
        for attempt in 0..<3 {
            var header = [UInt8](repeating: 0, count: 16)
            let n = pread(fd, &header, 16, 0)
            if n == 16, header == magic { return }
            if attempt < 2 { usleep(20_000) }
        }
        throw StoreError.notADatabase(path: path)
    }

    // MARK: - Access

    /// Runs `body` with the connection, holding the store's lock.
    func withDB<T>(_ body: (Connection) throws -> T) throws -> T {
        mutex.lock()
        defer { mutex.unlock() }
        guard !isClosed else { throw StoreError.invalidArgument("store '\(path)' is closed") }
        do {
            return try body(db)
        } catch is SQLiteBusy {
            // Retry loops turn busy into busyTimeout; this catches a path that has none, so
            // the internal error type never reaches callers.
            throw StoreError.busyTimeout(path: path, seconds: db.busyTimeout)
        }
    }

    /// The migrations recorded in this store's ledger, in version order.
    public func migrationRecords() throws -> [MigrationRecord] {
        try withDB { db in
            try db.read {
                try db.fetch(MigrationRecord.self, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            }
        }
    }

    /// Runs one read-only SQL statement, calling `row` for each result row. Parameters are
    /// always bound, never spliced into the text. A statement that would write, or more than
    /// one statement, is refused. Package-only, for the package's tests: moerec's own code
    /// outside the store reads through the typed methods. (Not `internal` + `@testable`:
    /// release builds of the tests do not compile the store for testing.)
    package func query(_ sql: String, _ params: [JSONValue] = [], row: (Row) throws -> Void) throws {
        let bound = try params.map(SQLValue.init)
        try withDB { db in
            try db.read {
                let statement = try db.prepareUncached(sql)
                guard statement.isReadOnly else { throw StoreError.notReadOnlyQuery(sql) }
                try statement.withBindings(bound) {
                    while try statement.step() { try row(Row(stmt: statement.handle)) }
                }
            }
        }
    }

    /// Runs one SQL statement that may write, in its own write transaction, and returns the
    /// number of rows it changed. It bypasses the store's own rules (run lifecycle, completed
    /// runs being final) but not the schema's constraints. For maintenance tools and
    /// fault-injection tests (e.g. altering a stored metric to check that `reproduce`
    /// notices). Package-only, like `query`; moerec's own code paths use the typed API.
    @discardableResult
    package func executeRaw(_ sql: String, _ params: [JSONValue] = []) throws -> Int {
        let bound = try params.map(SQLValue.init)
        return try withDB { db in
            try db.write {
                let statement = try db.prepareUncached(sql)
                try statement.withBindings(bound) { while try statement.step() {} }
                return db.changes
            }
        }
    }

    // MARK: - Runs

    /// Columns of `runs` added by migrations after the first (`ALTER TABLE ... ADD COLUMN`).
    static let runColumnsAddedLater = ["slurm_job", "vector_level", "import_source", "import_fingerprint"]

    /// The columns a `RunRecord` decodes from, from `runs` aliased `r`.
    static let runColumns = """
        r.id, r.hash, r.parent_hash, r.kind, r.status, r.config_json, r.dataset_fingerprint, r.numerics_version,
        r.host, r.os, r.cpu_model, r.blas_core, r.threads, r.moerec_version, r.git_commit, r.slurm_job, r.vector_level, r.pid,
        r.created_at, r.started_at, r.finished_at, r.wall_seconds, r.steps_done, r.failure_reason, r.failure_step,
        r.import_source, r.import_fingerprint
        """

    static func validateHash(_ hash: String) throws {
        guard RunIdentity.isValidHash(hash) else { throw StoreError.invalidHash(hash) }
    }

    /// What is wrong with a run row's hash or config text, nil when both are well-formed.
    /// The schema leaves these two to the code (parsing every config in a CHECK cost more
    /// than the rest of an insert): `NewRun` and `ImportedRun` make them well-formed, a
    /// merge checks each row it copies with this, and `verify` each stored row.
    public static func malformation(hash: String, configJSON: String) -> String? {
        guard RunIdentity.isValidHash(hash) else { return "its hash \(JSONString.quoted(hash)) is not 64 lowercase hex digits" }
        do { try JSONValue.checkObjectSyntax(configJSON) } catch { return "its config_json is not one JSON object: \(error)" }
        return nil
    }

    /// Reads a run inside an open transaction or read.
    func fetchRun(_ db: Connection, hash: String) throws -> RunRecord? {
        try db.fetch(RunRecord.self, "SELECT \(Store.runColumns) FROM runs r WHERE r.hash = ?", [.text(hash)]).first
    }

    /// (id, status) of a run, or `unknownRun`.
    func runIdAndStatus(_ db: Connection, hash: String) throws -> (Int64, RunStatus) {
        var result: (Int64, RunStatus)?
        try db.query("SELECT id, status FROM runs WHERE hash = ?", [.text(hash)]) { row in
            result = (row.int(0)!, RunStatus(rawValue: row.string(1)!)!)
        }
        guard let result else { throw StoreError.unknownRun(hash) }
        return result
    }

    /// Records a new run. Its hash is computed here from the identity fields
    /// (`RunIdentity.hash`), so a stored hash always matches its config. `status` must be
    /// `.queued` or `.running`; a trainer then calls `markRunning` to take the run's lease.
    /// Throws `.runExists` when the hash is already stored, `.unknownParent` when the
    /// parent is not.
    @discardableResult
    public func insertRun(kind: RunKind, config: JSONValue, parentHash: String?, datasetFingerprint: String,
                          numericsVersion: Int, status: RunStatus = .queued) throws -> RunRecord
    {
        let (record, inserted) = try insertRunIfAbsent(kind: kind, config: config, parentHash: parentHash,
                                                       datasetFingerprint: datasetFingerprint,
                                                       numericsVersion: numericsVersion, status: status)
        guard inserted else { throw StoreError.runExists(record.hash) }
        return record
    }

    /// Like `insertRun`, but an existing run with the same hash is returned instead of an
    /// error (`inserted` false): two sweep processes that need the same parent both get it.
    public func insertRunIfAbsent(kind: RunKind, config: JSONValue, parentHash: String?, datasetFingerprint: String,
                                  numericsVersion: Int, status: RunStatus = .queued) throws -> (record: RunRecord, inserted: Bool)
    {
        let run = try NewRun(kind: kind, config: config, parentHash: parentHash, datasetFingerprint: datasetFingerprint,
                             numericsVersion: numericsVersion, status: status)
        return try withDB { db in try db.write { try insertIfAbsent(run, db) } }
    }

    /// Inserts `run` inside an open write transaction unless its hash is stored.
    func insertIfAbsent(_ run: NewRun, _ db: Connection) throws -> (record: RunRecord, inserted: Bool) {
        if let existing = try fetchRun(db, hash: run.hash) { return (existing, false) }
        if let parentHash = run.parentHash, try fetchRun(db, hash: parentHash) == nil {
            throw StoreError.unknownParent(parentHash)
        }
        try insertRow(run, db.prepare(Store.insertRunSQL))
        return (try fetchRun(db, hash: run.hash)!, true)
    }

    /// The INSERT of a new run, a no-op for a stored hash; a run inserted running gets its start time.
    static let insertRunSQL = """
        INSERT INTO runs (hash, parent_hash, kind, status, config_json, dataset_fingerprint, numerics_version, started_at)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE ?4 WHEN 'running' THEN \(now) END) ON CONFLICT (hash) DO NOTHING
        """

    /// Runs `insert` (prepared from `insertRunSQL`) for `run`; the caller has checked the parent.
    func insertRow(_ run: NewRun, _ insert: Statement) throws {
        try insert.withBindings([.text(run.hash), run.parentHash.map { .text($0) } ?? .null, .text(run.kind.rawValue),
                                 .text(run.status.rawValue), .text(run.configJSON), .text(run.datasetFingerprint),
                                 .int(Int64(run.numericsVersion))]) { _ = try insert.step() }
    }

    /// The run with this full hash, or nil.
    public func run(hash: String) throws -> RunRecord? {
        try Store.validateHash(hash)
        return try withDB { db in try db.read { try fetchRun(db, hash: hash) } }
    }

    /// The full hash of the one run whose hash starts with `prefix` (hex digits, either
    /// case). Distinct errors for input that is not hex (`.invalidHashPrefix`), no match
    /// (`.unknownRun`) and several matches (`.ambiguousHashPrefix`).
    public func resolve(prefix: String) throws -> String {
        let lowered = prefix.lowercased()
        guard !lowered.isEmpty, lowered.utf8.count <= 64, lowered.utf8.allSatisfy(RunIdentity.isLowerHex) else {
            throw StoreError.invalidHashPrefix(prefix)
        }
        // A range scan on the unique index: every hash with this prefix sorts between the
        // prefix itself and the prefix followed by 'g' (the character after 'f').
        var matches: [String] = []
        try withDB { db in
            try db.read {
                try db.query("SELECT hash FROM runs WHERE hash >= ? AND hash < ? ORDER BY hash LIMIT 5",
                             [.text(lowered), .text(lowered + "g")]) { row in
                    matches.append(row.string(0)!)
                }
            }
        }
        switch matches.count {
        case 0: throw StoreError.unknownRun(prefix)
        case 1: return matches[0]
        default: throw StoreError.ambiguousHashPrefix(prefix, candidates: matches)
        }
    }

    /// Runs whose parent is `hash`, oldest first.
    public func children(of hash: String) throws -> [RunRecord] {
        try Store.validateHash(hash)
        return try withDB { db in
            try db.read {
                try db.fetch(RunRecord.self, "SELECT \(Store.runColumns) FROM runs r WHERE r.parent_hash = ? ORDER BY r.created_at, r.id",
                             [.text(hash)])
            }
        }
    }

    /// A run and its ancestors: the run first, then its parent, up to the pretraining run
    /// at the root. Throws `.unknownRun` when `hash` is not stored.
    public func lineage(of hash: String) throws -> [RunRecord] {
        try Store.validateHash(hash)
        let chain = try withDB { db in
            try db.read {
                try db.fetch(RunRecord.self, """
                    WITH RECURSIVE chain (hash, depth) AS (
                        SELECT ?, 0
                        UNION ALL
                        SELECT r.parent_hash, c.depth + 1 FROM chain c JOIN runs r ON r.hash = c.hash
                        WHERE r.parent_hash IS NOT NULL)
                    SELECT \(Store.runColumns) FROM chain c JOIN runs r ON r.hash = c.hash ORDER BY c.depth
                    """, [.text(hash)])
            }
        }
        guard !chain.isEmpty else { throw StoreError.unknownRun(hash) }
        return chain
    }

    /// Every run, oldest first, optionally filtered.
    public func allRuns(filter: WhereFilter? = nil) throws -> [RunRecord] {
        try withDB { db in
            try db.read {
                let sql = "SELECT \(Store.runColumns) FROM runs r WHERE \(filter?.sql ?? "1") ORDER BY r.created_at, r.id"
                return try db.fetch(RunRecord.self, sql, try (filter?.parameters ?? []).map(SQLValue.init))
            }
        }
    }

    /// The `moerec runs` listing: every run (oldest first) matching `filter`, with the
    /// `keyFields` of its config pulled out by `json_extract`, its best validation accuracy
    /// (max of metric `acc`, split `val`) and best validation loss (min of `loss`, `val`).
    public func listRuns(filter: WhereFilter? = nil, keyFields: [String] = RunSummary.defaultKeyFields) throws -> [RunSummary] {
        for key in keyFields { try WhereFilter.validateKey(key) }
        let extracts = keyFields.map { _ in "json_extract(r.config_json, ?)" }
        // Each best-metric subquery reads one (run, metric, split) range of the metrics
        // primary key, so the listing costs no scan of the runs' points.
        let best = { (aggregate: String) in
            """
            (SELECT \(aggregate)(m.value) FROM metrics m
              WHERE m.run_id = r.id
                AND m.name_id = (SELECT id FROM metric_names WHERE name = ?)
                AND m.split = (SELECT id FROM splits WHERE name = ?))
            """
        }
        var sql = "SELECT r.hash, r.parent_hash, r.kind, r.status, r.steps_done, r.wall_seconds, r.created_at, "
        sql += best("max") + ", " + best("min") + ", r.slurm_job, r.import_source"
        for extract in extracts { sql += ", " + extract }
        sql += " FROM runs r WHERE \(filter?.sql ?? "1") ORDER BY r.created_at, r.id"
        // Parameters in the order their placeholders appear in the text.
        var params: [SQLValue] = [.text(MetricName.accuracy), .text(Split.val), .text(MetricName.loss), .text(Split.val)]
        params += keyFields.map { .text("$.\($0)") }
        params += try (filter?.parameters ?? []).map(SQLValue.init)

        return try withDB { db in
            try db.read {
                var summaries: [RunSummary] = []
                try db.query(sql, params) { row in
                    var fields: [String: JSONValue] = [:]
                    for (i, key) in keyFields.enumerated() where !row.isNull(11 + i) {
                        fields[key] = row.value(11 + i)
                    }
                    summaries.append(RunSummary(
                        hash: row.string(0)!, parentHash: row.string(1), kind: RunKind(rawValue: row.string(2)!)!,
                        status: RunStatus(rawValue: row.string(3)!)!, keyFields: fields,
                        bestValAccuracy: row.double(7), bestValLoss: row.double(8),
                        stepsDone: Int(row.int(4)!), wallSeconds: row.double(5), createdAt: row.string(6)!,
                        slurmJob: row.string(9), importSource: row.string(10)))
                }
                return summaries
            }
        }
    }

    // MARK: - Lifecycle

    /// Starts (or resumes) training a run: takes its lease, then sets it `running` with
    /// this process's environment and pid. The lease is held until `markCompleted`,
    /// `markFailed` or `markInterrupted`, or until the process dies, so that other processes
    /// can tell a live run from a crashed one.
    ///
    /// Allowed from `queued`, `interrupted`, `failed`, and from `running` when no live
    /// process holds the lease (the crash was not yet noticed). A completed run is refused
    /// (it is a cache hit); a run another process is training gives `.runInProgress`.
    @discardableResult
    public func markRunning(hash: String, environment: RunEnvironment, pid: Int = Int(getpid())) throws -> RunLease {
        try Store.validateHash(hash)
        return try withDB { db in
            if let held = leases[hash], held.isHeld { throw StoreError.runInProgress(hash: hash, pid: pid) }
            let lease = try acquireLease(hash: hash)
            do {
                try db.write {
                    let (_, status) = try runIdAndStatus(db, hash: hash)
                    if status == .completed {
                        throw StoreError.invalidStatusTransition(hash: hash, from: status.rawValue, to: RunStatus.running.rawValue)
                    }
                    try db.query("""
                        UPDATE runs SET status = 'running', host = ?, os = ?, cpu_model = ?, blas_core = ?, threads = ?,
                            moerec_version = ?, git_commit = ?, slurm_job = ?, vector_level = ?, pid = ?, started_at = \(Store.now), finished_at = NULL,
                            wall_seconds = NULL, failure_reason = NULL, failure_step = NULL
                        WHERE hash = ?
                        """,
                        [Store.text(environment.host), Store.text(environment.os), Store.text(environment.cpuModel),
                         Store.text(environment.blasCore), environment.threads.map { .int(Int64($0)) } ?? .null,
                         Store.text(environment.moerecVersion), Store.text(environment.gitCommit), Store.text(environment.slurmJob),
                         Store.text(environment.vectorLevel), .int(Int64(pid)),
                         .text(hash)])
                }
            } catch {
                lease.release()
                throw error
            }
            leases[hash] = lease
            return lease
        }
    }

    private static func text(_ s: String?) -> SQLValue { s.map { .text($0) } ?? .null }

    /// Takes the run's lock file. Another process that is only probing it (a store being
    /// opened) holds it for microseconds, so a few short retries tell a probe from a
    /// trainer.
    private func acquireLease(hash: String) throws -> RunLease {
        let path = lockPath(for: hash)
        let fd = try LockFile.openFile(path)
        for attempt in 0..<40 {
            if try LockFile.tryLock(fd, path: path) {
                return RunLease(hash: hash, lockPath: path, fd: fd)
            }
            if attempt < 39 { usleep(50_000) }
        }
        closeDescriptor(fd)
        let pid = try? db.read { try fetchRun(db, hash: hash)?.pid }
        throw StoreError.runInProgress(hash: hash, pid: pid ?? nil)
    }

    /// Records progress of a running run (shown by `moerec runs` while it trains).
    public func recordProgress(hash: String, steps: Int) throws {
        try Store.validateHash(hash)
        guard steps >= 0 else { throw StoreError.invalidArgument("steps \(steps) is negative") }
        try withDB { db in
            try db.write {
                let (_, status) = try runIdAndStatus(db, hash: hash)
                guard status == .running else {
                    throw StoreError.invalidStatusTransition(hash: hash, from: status.rawValue, to: "updated with progress")
                }
                try db.query("UPDATE runs SET steps_done = ? WHERE hash = ?", [.int(Int64(steps)), .text(hash)])
            }
        }
    }

    /// Marks a run completed and releases its lease. Flush the run's `MetricWriter` first:
    /// a run is `completed` only once all its metrics are committed, so a reader never sees
    /// a completed run with part of its metrics.
    public func markCompleted(hash: String, wallSeconds: Double, steps: Int) throws {
        try Store.validateHash(hash)
        guard wallSeconds >= 0, wallSeconds.isFinite else { throw StoreError.invalidArgument("wall time \(wallSeconds) s is not a duration") }
        guard steps >= 0 else { throw StoreError.invalidArgument("steps \(steps) is negative") }
        try finish(hash: hash, to: .completed, from: [.running, .interrupted], sql: """
            UPDATE runs SET status = 'completed', finished_at = \(Store.now), wall_seconds = ?, steps_done = ? WHERE hash = ?
            """, params: [.double(wallSeconds), .int(Int64(steps)), .text(hash)])
    }

    /// Marks a run failed at `step` with `reason` (e.g. "loss is NaN") and releases its lease.
    public func markFailed(hash: String, reason: String, step: Int?) throws {
        try Store.validateHash(hash)
        guard !reason.isEmpty else { throw StoreError.invalidArgument("a failure needs a reason") }
        try finish(hash: hash, to: .failed, from: [.queued, .running, .interrupted], sql: """
            UPDATE runs SET status = 'failed', finished_at = \(Store.now), failure_reason = ?, failure_step = ? WHERE hash = ?
            """, params: [.text(reason), step.map { .int(Int64($0)) } ?? .null, .text(hash)])
    }

    /// Marks a running run interrupted (a trainer stopping on SIGINT) and releases its lease.
    public func markInterrupted(hash: String, reason: String) throws {
        try Store.validateHash(hash)
        try finish(hash: hash, to: .interrupted, from: [.running], sql: """
            UPDATE runs SET status = 'interrupted', failure_reason = ? WHERE hash = ?
            """, params: [.text(reason), .text(hash)])
    }

    private func finish(hash: String, to target: RunStatus, from allowed: Set<RunStatus>, sql: String, params: [SQLValue]) throws {
        try withDB { db in
            try db.write {
                let (_, status) = try runIdAndStatus(db, hash: hash)
                guard allowed.contains(status) else {
                    throw StoreError.invalidStatusTransition(hash: hash, from: status.rawValue, to: target.rawValue)
                }
                try db.query(sql, params)
            }
            // Released only after the commit: until then the row says running and the lock
            // says alive, so no other process can mark the run interrupted in between.
            leases.removeValue(forKey: hash)?.release()
        }
    }

    /// Marks `interrupted` every `running` run whose lease nobody holds (its trainer died
    /// without marking it), and returns their hashes. Runs once when the store opens;
    /// callable again by long-lived processes.
    @discardableResult
    public func detectInterruptedRuns() throws -> [String] {
        try withDB { db in
            var running: [(String, Int?)] = []
            try db.read {
                running = []
                try db.query("SELECT hash, pid FROM runs WHERE status = 'running' ORDER BY id") { row in
                    running.append((row.string(0)!, row.int(1).map(Int.init)))
                }
            }
            var interrupted: [String] = []
            for (hash, pid) in running {
                if let own = leases[hash], own.isHeld { continue }
                let path = lockPath(for: hash)
                let fd = try LockFile.openFile(path)
                defer { closeDescriptor(fd) }
                // Holding the lock while updating: a trainer resuming this run right now
                // waits in markRunning until the row says interrupted.
                guard try LockFile.tryLock(fd, path: path) else { continue }
                let reason = Store.endedReason(pid: pid)
                let changed: Bool = try db.write {
                    try db.query("UPDATE runs SET status = 'interrupted', failure_reason = ? WHERE hash = ? AND status = 'running'",
                                 [.text(reason), .text(hash)])
                    return db.changes == 1
                }
                if changed { interrupted.append(hash) }
            }
            return interrupted
        }
    }
}


/// The stores this process has open, held weakly, for `Store.closeAll`.
final class OpenStores: @unchecked Sendable {
    static let shared = OpenStores()
    private let lock = NSLock()
    private var stores: [ObjectIdentifier: Weak] = [:]

    private struct Weak { weak var store: Store? }

    func add(_ store: Store) {
        lock.lock(); defer { lock.unlock() }
        stores[ObjectIdentifier(store)] = Weak(store: store)
    }

    func remove(_ store: Store) {
        lock.lock(); defer { lock.unlock() }
        stores[ObjectIdentifier(store)] = nil
    }

    func all() -> [Store] {
        lock.lock(); defer { lock.unlock() }
        return stores.values.compactMap(\.store)
    }
}

/// `close(2)`, for methods of `Store`, where `close` names `Store.close()`.
private func closeDescriptor(_ fd: Int32) { _ = close(fd) }
