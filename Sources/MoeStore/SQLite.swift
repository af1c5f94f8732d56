import CSQLite
import Foundation
import MoeJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SQLite copies bound text and blobs when given this destructor (the C macro
/// SQLITE_TRANSIENT is not importable into Swift).
private let transientDestructor = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// Raised inside the connection for SQLITE_BUSY / SQLITE_LOCKED so that retry loops can
/// catch it; it never leaves the module (the retry loop turns it into
/// `StoreError.busyTimeout` once the deadline has passed).
struct SQLiteBusy: Error {
    let code: Int32
    let message: String
}

/// One SQLite connection. Not thread-safe by itself: `Store` serialises access with a lock.
final class Connection {
    let path: String
    private(set) var handle: OpaquePointer?
    /// How long the SQLite busy handler waits for a lock before returning SQLITE_BUSY.
    private(set) var busyTimeout: Double
    /// Prepared statements reused across calls, keyed by SQL text.
    private var cache: [String: Statement] = [:]

    /// How a connection opens its file.
    enum Access {
        /// Read and write, creating the file when missing.
        case readWrite
        /// Read only; the file must exist. A WAL database still needs its `-shm` file (or a
        /// writable directory to create it in).
        case readOnly
        /// Read only, and SQLite assumes nobody changes the file while it is open, so it
        /// needs no `-shm` and takes no locks: for a store on a read-only filesystem.
        case immutable
    }

    /// Set once per process, before the first connection initialises SQLite: without memory
    /// statistics every SQLite allocation skips a global mutex (0.3 s of the 4.3 s of CPU
    /// SQLite spends inserting a sweep's 100,000 runs). SQLite recommends it for speed.
    private static let memoryStatisticsOff: Void = { _ = moerec_sqlite3_disable_memstatus() }()

    init(path: String, busyTimeout: Double, access: Access = .readWrite) throws {
        Connection.memoryStatisticsOff
        self.path = path
        self.busyTimeout = busyTimeout
        var h: OpaquePointer?
        // NOMUTEX: the Store's own lock serialises use, so SQLite's mutex would be pure cost.
        let rc: Int32
        switch access {
        case .readWrite:
            rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        case .readOnly:
            rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil)
        case .immutable:
            rc = sqlite3_open_v2(Connection.fileURI(path) + "?immutable=1", &h,
                                 SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nil)
        }
        handle = h
        if rc != SQLITE_OK {
            let error = mapError(rc)
            close()
            throw error
        }
        sqlite3_extended_result_codes(h, 1)
        setBusyTimeout(busyTimeout)
    }

    func setBusyTimeout(_ seconds: Double) {
        busyTimeout = seconds
        sqlite3_busy_timeout(handle, Int32(seconds * 1000))
    }

    deinit { close() }

    /// `file:` URI of a path: `%`, `?` and `#` (which would start a query or fragment) are
    /// percent-encoded; a relative path stays relative.
    static func fileURI(_ path: String) -> String {
        var bytes = Array("file:".utf8)
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "?"), UInt8(ascii: "#"): bytes += Array(String(format: "%%%02X", byte).utf8)
            default: bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func close() {
        for statement in cache.values { statement.finalize() }
        cache.removeAll()
        if let h = handle {
            // close_v2 defers the close until any statement still alive is finalized.
            sqlite3_close_v2(h)
            handle = nil
        }
    }

    // MARK: Errors

    /// Maps a SQLite result code to the error the caller should see.
    func mapError(_ rc: Int32) -> Error {
        let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
        let errno = handle.map { sqlite3_system_errno($0) } ?? 0
        switch rc & 0xFF {
        case SQLITE_BUSY, SQLITE_LOCKED:
            return SQLiteBusy(code: rc, message: message)
        case SQLITE_READONLY:
            return StoreError.readOnly(path: path)
        case SQLITE_FULL:
            return StoreError.diskFull(path: path)
        case SQLITE_NOTADB:
            return StoreError.notADatabase(path: path)
        case SQLITE_CORRUPT:
            return StoreError.corrupt(path: path, detail: message)
        case SQLITE_CANTOPEN:
            if errno == EROFS || errno == EACCES || errno == EPERM { return StoreError.readOnly(path: path) }
            return StoreError.cannotOpen(path: path, reason: message)
        case SQLITE_IOERR:
            // A full disk often surfaces as an I/O error on write(); report it as what it is.
            if errno == ENOSPC || errno == EDQUOT { return StoreError.diskFull(path: path) }
            if errno == EROFS { return StoreError.readOnly(path: path) }
            return StoreError.ioError(path: path, detail: "\(message) (errno \(errno))")
        case SQLITE_CONSTRAINT:
            return StoreError.constraintViolation(message)
        default:
            return StoreError.sqlite(code: rc, message: message)
        }
    }

    func check(_ rc: Int32) throws {
        if rc != SQLITE_OK { throw mapError(rc) }
    }

    // MARK: Statements

    /// Runs one or more statements without parameters (schema text, PRAGMAs, BEGIN/COMMIT).
    func execute(_ sql: String) throws {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        try check(rc)
    }

    /// A prepared statement for `sql`, from the cache when one is free. A statement that is
    /// still being iterated (a caller reading rows runs the same SQL again) is not handed
    /// out twice: the nested use gets a fresh, uncached statement.
    func prepare(_ sql: String) throws -> Statement {
        if let cached = cache[sql], !cached.inUse {
            return cached
        }
        let statement = try prepareUncached(sql)
        if cache[sql] == nil {
            cache[sql] = statement
        }
        return statement
    }

    func prepareUncached(_ sql: String) throws -> Statement {
        var stmt: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let rc = sql.withCString { cSQL in
            let rc = sqlite3_prepare_v2(handle, cSQL, -1, &stmt, &tail)
            if rc == SQLITE_OK, let tail, tail.pointee != 0 {
                // Only whitespace may follow: one call prepares exactly one statement.
                let rest = String(cString: tail).trimmingCharacters(in: .whitespacesAndNewlines)
                if !rest.isEmpty {
                    sqlite3_finalize(stmt)
                    stmt = nil
                    return SQLITE_MISUSE
                }
            }
            return rc
        }
        if rc == SQLITE_MISUSE, stmt == nil {
            throw StoreError.invalidArgument("one SQL statement expected, got several: \(sql)")
        }
        try check(rc)
        guard let stmt else { throw StoreError.invalidArgument("empty SQL statement") }
        return Statement(handle: stmt, connection: self)
    }

    /// Runs `sql` with `params`, calling `row` for each result row.
    func query(_ sql: String, _ params: [SQLValue] = [], row: (Row) throws -> Void = { _ in }) throws {
        let statement = try prepare(sql)
        try statement.withBindings(params) {
            while try statement.step() {
                try row(Row(stmt: statement.handle))
            }
        }
    }

    /// The first column of the first row, or nil when there is no row.
    func scalar(_ sql: String, _ params: [SQLValue] = []) throws -> SQLValue? {
        var result: SQLValue?
        let statement = try prepare(sql)
        try statement.withBindings(params) {
            if try statement.step() {
                result = Row(stmt: statement.handle).sqlValue(0)
            }
        }
        return result
    }

    var changes: Int { Int(sqlite3_changes(handle)) }
    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    // MARK: Transactions and retries

    /// Runs `body`, retrying with exponential backoff while SQLite reports the database busy
    /// or locked. SQLite's busy handler already waits up to `busyTimeout`; this loop covers
    /// the cases where SQLite returns BUSY without waiting (lock upgrades, WAL recovery,
    /// changing the journal mode) and gives up only after twice the busy timeout.
    func retryingBusy<T>(_ body: () throws -> T) throws -> T {
        let start = Date()
        var delay = 0.001
        while true {
            do {
                return try body()
            } catch is SQLiteBusy {
                let waited = Date().timeIntervalSince(start)
                if waited > 2 * busyTimeout {
                    throw StoreError.busyTimeout(path: path, seconds: waited)
                }
                // Jitter keeps processes that collided once from colliding again in lockstep.
                usleep(UInt32(delay * Double.random(in: 0.5...1.5) * 1_000_000))
                delay = min(delay * 2, 0.1)
            }
        }
    }

    /// A write transaction. BEGIN IMMEDIATE takes the write lock up front, so a transaction
    /// never has to upgrade a read lock mid-way (which SQLite can refuse with BUSY without
    /// waiting). On any error the transaction is rolled back; on BUSY the whole body is
    /// retried, so `body` must only touch the database (or be otherwise repeatable).
    func write<T>(_ body: () throws -> T) throws -> T {
        precondition(!inTransaction, "nested write transaction")
        return try retryingBusy {
            try execute("BEGIN IMMEDIATE")
            do {
                let result = try body()
                try execute("COMMIT")
                return result
            } catch {
                if inTransaction { _ = sqlite3_exec(handle, "ROLLBACK", nil, nil, nil) }
                throw error
            }
        }
    }

    /// A read (one or several statements) retried on BUSY.
    func read<T>(_ body: () throws -> T) throws -> T {
        try retryingBusy(body)
    }
}

/// A value bound to or read from SQLite.
enum SQLValue: Equatable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)

    var int: Int64? { if case let .int(i) = self { return i }; return nil }
    var text: String? { if case let .text(s) = self { return s }; return nil }

    /// JSON values bind as their natural SQLite type; arrays and objects as canonical JSON.
    init(_ json: JSONValue) throws {
        switch json {
        case .null: self = .null
        case let .bool(b): self = .int(b ? 1 : 0)
        case let .int(i): self = .int(i)
        case let .double(d): self = .double(d)
        case let .string(s): self = .text(s)
        case .array, .object: self = .text(try json.canonicalString)
        }
    }
}

/// A prepared statement. Bindings are cleared and the statement reset after every use.
final class Statement {
    private(set) var handle: OpaquePointer
    unowned let connection: Connection
    fileprivate(set) var inUse = false
    private var finalized = false

    init(handle: OpaquePointer, connection: Connection) {
        self.handle = handle
        self.connection = connection
    }

    deinit { finalize() }

    func finalize() {
        if !finalized {
            sqlite3_finalize(handle)
            finalized = true
        }
    }

    var isReadOnly: Bool { sqlite3_stmt_readonly(handle) != 0 }

    /// Binds `params`, runs `body` (which steps the statement), then resets it whatever
    /// happens, so the statement can be reused and holds no read lock afterwards.
    func withBindings<T>(_ params: [SQLValue], _ body: () throws -> T) throws -> T {
        inUse = true
        defer {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
            inUse = false
        }
        let expected = Int(sqlite3_bind_parameter_count(handle))
        guard expected == params.count else {
            throw StoreError.invalidArgument("statement expects \(expected) parameters, got \(params.count)")
        }
        for (i, value) in params.enumerated() {
            try bind(value, at: Int32(i + 1))
        }
        return try body()
    }

    func bind(_ value: SQLValue, at index: Int32) throws {
        let rc: Int32
        switch value {
        case .null: rc = sqlite3_bind_null(handle, index)
        case let .int(i): rc = sqlite3_bind_int64(handle, index, i)
        case let .double(d): rc = sqlite3_bind_double(handle, index, d)
        case let .text(s):
            var copy = s
            rc = copy.withUTF8 { buf in
                // An empty buffer may have no base address, and a NULL pointer would bind SQL
                // NULL instead of the empty string.
                guard let base = buf.baseAddress, buf.count > 0 else {
                    return sqlite3_bind_text(handle, index, "", 0, transientDestructor)
                }
                return sqlite3_bind_text(handle, index, UnsafeRawPointer(base).assumingMemoryBound(to: CChar.self),
                                         Int32(buf.count), transientDestructor)
            }
        }
        try connection.check(rc)
    }

    // Unchecked fast paths for the metric ingestion loop, where the types are known.
    @inline(__always) func bindInt(_ value: Int64, at index: Int32) { sqlite3_bind_int64(handle, index, value) }
    @inline(__always) func bindDouble(_ value: Double, at index: Int32) { sqlite3_bind_double(handle, index, value) }
    @inline(__always) func bindNull(at index: Int32) { sqlite3_bind_null(handle, index) }

    /// Steps once: true when a row is available, false when done.
    func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.mapError(rc)
        }
    }

    /// Steps a statement that returns no rows and resets it (for the bind-step-reset loop).
    @inline(__always) func runAndReset() throws {
        let rc = sqlite3_step(handle)
        sqlite3_reset(handle)
        if rc != SQLITE_DONE && rc != SQLITE_ROW { throw connection.mapError(rc) }
    }
}

/// One result row, valid only inside the callback that receives it.
/// Column indexes start at 0; accessors return nil for SQL NULL.
package struct Row {
    let stmt: OpaquePointer

    package var columnCount: Int { Int(sqlite3_column_count(stmt)) }

    package func columnName(_ index: Int) -> String {
        sqlite3_column_name(stmt, Int32(index)).map { String(cString: $0) } ?? ""
    }

    package func isNull(_ index: Int) -> Bool {
        sqlite3_column_type(stmt, Int32(index)) == SQLITE_NULL
    }

    /// The column as an integer (SQLite converts REAL and numeric TEXT), nil for NULL.
    package func int(_ index: Int) -> Int64? {
        isNull(index) ? nil : sqlite3_column_int64(stmt, Int32(index))
    }

    /// The column as a double (SQLite converts INTEGER and numeric TEXT), nil for NULL.
    package func double(_ index: Int) -> Double? {
        isNull(index) ? nil : sqlite3_column_double(stmt, Int32(index))
    }

    /// The column as text, nil for NULL.
    package func string(_ index: Int) -> String? {
        guard !isNull(index), let text = sqlite3_column_text(stmt, Int32(index)) else { return nil }
        let count = Int(sqlite3_column_bytes(stmt, Int32(index)))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    /// The column as JSON by its SQLite storage class (INTEGER → .int, REAL → .double,
    /// TEXT → .string, NULL → .null, BLOB → .string of lowercase hex).
    package func value(_ index: Int) -> JSONValue {
        switch sqlite3_column_type(stmt, Int32(index)) {
        case SQLITE_INTEGER: return .int(sqlite3_column_int64(stmt, Int32(index)))
        case SQLITE_FLOAT: return .double(sqlite3_column_double(stmt, Int32(index)))
        case SQLITE_TEXT: return .string(string(index) ?? "")
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(stmt, Int32(index)))
            guard count > 0, let raw = sqlite3_column_blob(stmt, Int32(index)) else { return .string("") }
            let bytes = UnsafeRawBufferPointer(start: raw, count: count)
            return .string(lowercaseHex(bytes))
        default: return .null
        }
    }

    func sqlValue(_ index: Int) -> SQLValue {
        switch sqlite3_column_type(stmt, Int32(index)) {
        case SQLITE_INTEGER: return .int(sqlite3_column_int64(stmt, Int32(index)))
        case SQLITE_FLOAT: return .double(sqlite3_column_double(stmt, Int32(index)))
        case SQLITE_NULL: return .null
        default: return .text(string(index) ?? "")
        }
    }
}
