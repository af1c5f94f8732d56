import Foundation

/// Buffers a run's metric points and writes them in one transaction per batch.
///
/// The training loop calls `add` per point; every `batchSize` points (and on `flush()`)
/// the buffer is written with one reused prepared statement inside one `BEGIN IMMEDIATE`
/// transaction. Points are upserted on (run, metric, split, step): a resumed run that
/// writes a step again replaces the value, never duplicates the row.
///
/// Points still buffered when the writer is dropped are not written: call `flush()` at the
/// end of training (before `Store.markCompleted`) and wherever losing the buffer would
/// matter. A writer is used from one thread at a time.
public final class MetricWriter {
    /// A (metric name, split) pair interned by this writer, for a training loop that wants
    /// to avoid hashing strings per point.
    public struct Key: Hashable, Sendable {
        fileprivate let index: Int32
    }

    private struct NameSplit: Hashable {
        let name: String
        let split: String
    }

    public let runHash: String
    public let batchSize: Int
    /// Points committed by this writer so far.
    public private(set) var pointsWritten = 0
    public var pendingCount: Int { pendingKeys.count }

    private let store: Store
    private let runId: Int64
    private var keyIndex: [NameSplit: Int32] = [:]
    private var keyNames: [NameSplit] = []
    /// Database ids (name_id, split) per key, known once a transaction that interned them
    /// has committed.
    private var keyIds: [(name: Int64, split: Int64)?] = []
    // The buffer as parallel arrays: no per-point allocation.
    private var pendingKeys: [Int32] = []
    private var pendingSteps: [Int64] = []
    private var pendingValues: [Double] = []
    /// Prepared once per writer: the multi-row insert and the single-row one for the tail.
    private var insertMany: Statement?
    private var insertOne: Statement?

    /// Rows per multi-row INSERT: one statement execution per 64 points instead of per
    /// point (320 parameters, well under SQLite's limit of 32,766).
    static let rowsPerInsert = 64

    static func insertSQL(rows: Int) -> String {
        "INSERT INTO metrics (run_id, name_id, split, step, value) VALUES "
            + Array(repeating: "(?, ?, ?, ?, ?)", count: rows).joined(separator: ", ")
            + " ON CONFLICT (run_id, name_id, split, step) DO UPDATE SET value = excluded.value"
    }

    init(store: Store, runHash: String, runId: Int64, batchSize: Int) {
        self.store = store
        self.runHash = runHash
        self.runId = runId
        self.batchSize = batchSize
        pendingKeys.reserveCapacity(batchSize)
        pendingSteps.reserveCapacity(batchSize)
        pendingValues.reserveCapacity(batchSize)
    }

    /// The key for metric `name` on `split` (e.g. "loss", "train").
    public func key(name: String, split: String) throws -> Key {
        let pair = NameSplit(name: name, split: split)
        if let index = keyIndex[pair] { return Key(index: index) }
        try MetricWriter.checkLengths(name: name, split: split)
        let index = Int32(keyNames.count)
        keyNames.append(pair)
        keyIds.append(nil)
        keyIndex[pair] = index
        return Key(index: index)
    }

    /// The lengths the schema allows a metric name (1 to 200 characters) and a split name
    /// (1 to 64), checked before a transaction opens.
    static func checkLengths(name: String, split: String) throws {
        guard (1...200).contains(name.count) else {
            throw StoreError.invalidArgument("metric name '\(name)' must be 1 to 200 characters")
        }
        guard (1...64).contains(split.count) else {
            throw StoreError.invalidArgument("split name '\(split)' must be 1 to 64 characters")
        }
    }

    /// Buffers one point; writes the batch when it is full. NaN is stored as NULL.
    public func add(_ key: Key, step: Int, value: Double) throws {
        guard step >= 0 else { throw StoreError.invalidArgument("metric step \(step) is negative") }
        pendingKeys.append(key.index)
        pendingSteps.append(Int64(step))
        pendingValues.append(value)
        if pendingKeys.count >= batchSize { try flush() }
    }

    /// Buffers one point by name; see `add(_:step:value:)`.
    public func add(step: Int, split: String, name: String, value: Double) throws {
        try add(try key(name: name, split: split), step: step, value: value)
    }

    /// Writes every buffered point in one transaction. On error nothing of the batch is
    /// written and the points stay buffered, so the call can be repeated.
    public func flush() throws {
        guard !pendingKeys.isEmpty else { return }
        let resolved: [(name: Int64, split: Int64)?] = try store.withDB { db in
            // The batch satisfies its foreign keys by construction: the run row is read and
            // the name and split ids are interned inside this same write transaction, which
            // holds the database's only write lock. Checking them again per row would cost
            // three b-tree lookups per point (about a third of ingestion time), so
            // enforcement is paused for the batch on this connection only; the constraints
            // stay declared and every other write checks them.
            try db.execute("PRAGMA foreign_keys = OFF")
            defer { try? db.execute("PRAGMA foreign_keys = ON") }
            return try db.write {
                let (_, status) = try store.runIdAndStatus(db, hash: runHash)
                if status == .completed { throw StoreError.runCompleted(runHash) }

                var ids = keyIds
                for i in ids.indices where ids[i] == nil {
                    ids[i] = (try MetricWriter.intern(db, table: "metric_names", name: keyNames[i].name),
                              try MetricWriter.intern(db, table: "splits", name: keyNames[i].split))
                }

                try insertBatch(db, nameIds: ids.map { $0!.name }, splitIds: ids.map { $0!.split })
                return ids
            }
        }
        keyIds = resolved
        pointsWritten += pendingKeys.count
        pendingKeys.removeAll(keepingCapacity: true)
        pendingSteps.removeAll(keepingCapacity: true)
        pendingValues.removeAll(keepingCapacity: true)
    }

    /// Inserts the buffer inside the caller's transaction.
    private func insertBatch(_ db: Connection, nameIds: [Int64], splitIds: [Int64]) throws {
        // Local copies: closures over locals need no runtime exclusivity checks.
        let keys = pendingKeys, steps = pendingSteps, values = pendingValues
        // Sorted by primary key, each series is appended at its end of the b-tree instead of
        // points hopping between series (about twice as fast). The buffer index breaks ties,
        // so a step written twice in one batch keeps its last value.
        let order = keys.indices.sorted { a, b in
            let ka = Int(keys[a]), kb = Int(keys[b])
            if nameIds[ka] != nameIds[kb] { return nameIds[ka] < nameIds[kb] }
            if splitIds[ka] != splitIds[kb] { return splitIds[ka] < splitIds[kb] }
            if steps[a] != steps[b] { return steps[a] < steps[b] }
            return a < b
        }

        if insertMany == nil { insertMany = try db.prepareUncached(MetricWriter.insertSQL(rows: MetricWriter.rowsPerInsert)) }
        if insertOne == nil { insertOne = try db.prepareUncached(MetricWriter.insertSQL(rows: 1)) }
        let many = insertMany!, one = insertOne!
        let runId = self.runId

        func bindRow(_ statement: Statement, row: Int32, point i: Int) {
            let base = row * 5
            let k = Int(keys[i])
            statement.bindInt(runId, at: base + 1)
            statement.bindInt(nameIds[k], at: base + 2)
            statement.bindInt(splitIds[k], at: base + 3)
            statement.bindInt(steps[i], at: base + 4)
            let value = values[i]
            // SQLite has no NaN: it becomes NULL (and is read back as NaN).
            if value.isNaN { statement.bindNull(at: base + 5) } else { statement.bindDouble(value, at: base + 5) }
        }

        var next = 0
        let chunk = MetricWriter.rowsPerInsert
        while order.count - next >= chunk {
            for row in 0..<chunk { bindRow(many, row: Int32(row), point: order[next + row]) }
            try many.runAndReset()
            next += chunk
        }
        while next < order.count {
            bindRow(one, row: 0, point: order[next])
            try one.runAndReset()
            next += 1
        }
    }

    /// The id of `name` in `table` (metric_names or splits), added if new. Inside the
    /// caller's transaction.
    static func intern(_ db: Connection, table: String, name: String) throws -> Int64 {
        try db.query("INSERT INTO \(table) (name) VALUES (?) ON CONFLICT (name) DO NOTHING", [.text(name)])
        guard let id = try db.scalar("SELECT id FROM \(table) WHERE name = ?", [.text(name)])?.int else {
            throw StoreError.sqlite(code: 0, message: "interning '\(name)' in \(table) returned no id")
        }
        return id
    }
}

extension Store {
    /// A buffered writer for one run's metrics (default batch: 50,000 points).
    public func metricWriter(runHash: String, batchSize: Int = 50_000) throws -> MetricWriter {
        try Store.validateHash(runHash)
        guard batchSize >= 1 else { throw StoreError.invalidArgument("batch size \(batchSize) must be at least 1") }
        let (runId, _) = try withDB { db in try db.read { try runIdAndStatus(db, hash: runHash) } }
        return MetricWriter(store: self, runHash: runHash, runId: runId, batchSize: batchSize)
    }

    /// One series of a run, ordered by step. Empty when the run logged no such metric.
    public func metrics(runHash: String, name: String, split: String) throws -> [(step: Int, value: Double)] {
        try Store.validateHash(runHash)
        return try withDB { db in
            try db.read {
                let (runId, _) = try runIdAndStatus(db, hash: runHash)
                var series: [(step: Int, value: Double)] = []
                try db.query("""
                    SELECT m.step, m.value FROM metrics m
                    WHERE m.run_id = ?
                      AND m.name_id = (SELECT id FROM metric_names WHERE name = ?)
                      AND m.split = (SELECT id FROM splits WHERE name = ?)
                    ORDER BY m.step
                    """, [.int(runId), .text(name), .text(split)]) { row in
                    series.append((Int(row.int(0)!), row.double(1) ?? .nan))
                }
                return series
            }
        }
    }

    /// Every point of a run, ordered by (step, split name, metric name): the order
    /// `reproduce` compares in, independent of store-local ids.
    public func allMetrics(runHash: String) throws -> [MetricPoint] {
        var points: [MetricPoint] = []
        try forEachMetric(runHash: runHash) { points.append($0) }
        return points
    }

    /// Streams metric points through `body` one row at a time from a prepared statement,
    /// never holding the whole set in memory. Each filter is optional; rows come ordered by
    /// (run hash, step, split name, metric name).
    public func forEachMetric(runHash: String? = nil, name: String? = nil, split: String? = nil,
                              _ body: (MetricPoint) throws -> Void) throws
    {
        if let runHash { try Store.validateHash(runHash) }
        try withDB { db in
            try db.read {
                var conditions: [String] = []
                var params: [SQLValue] = []
                if let runHash {
                    let (runId, _) = try runIdAndStatus(db, hash: runHash)
                    conditions.append("m.run_id = ?")
                    params.append(.int(runId))
                }
                if let name {
                    conditions.append("n.name = ?")
                    params.append(.text(name))
                }
                if let split {
                    conditions.append("s.name = ?")
                    params.append(.text(split))
                }
                let sql = """
                    SELECT r.hash, m.step, s.name, n.name, m.value
                    FROM metrics m
                    JOIN runs r ON r.id = m.run_id
                    JOIN metric_names n ON n.id = m.name_id
                    JOIN splits s ON s.id = m.split
                    WHERE \(conditions.isEmpty ? "1" : conditions.joined(separator: " AND "))
                    ORDER BY r.hash, m.step, s.name, n.name
                    """
                try db.query(sql, params) { row in
                    try body(MetricPoint(runHash: row.string(0)!, step: Int(row.int(1)!), split: row.string(2)!,
                                         name: row.string(3)!, value: row.double(4) ?? .nan))
                }
            }
        }
    }

    /// One line per (metric, split) of a run: count, step range, last/min/max value.
    public func metricSummary(runHash: String) throws -> [MetricSeriesSummary] {
        try Store.validateHash(runHash)
        return try withDB { db in
            try db.read {
                let (runId, _) = try runIdAndStatus(db, hash: runHash)
                var result: [MetricSeriesSummary] = []
                try db.query("""
                    SELECT n.name, s.name, count(*), min(m.step), max(m.step), min(m.value), max(m.value),
                           (SELECT coalesce(l.value, 'nan') FROM metrics l
                             WHERE l.run_id = m.run_id AND l.name_id = m.name_id AND l.split = m.split
                             ORDER BY l.step DESC LIMIT 1)
                    FROM metrics m
                    JOIN metric_names n ON n.id = m.name_id
                    JOIN splits s ON s.id = m.split
                    WHERE m.run_id = ?
                    GROUP BY m.name_id, m.split
                    ORDER BY n.name, s.name
                    """, [.int(runId)]) { row in
                    let last: Double? = row.string(7) == "nan" ? .nan : row.double(7)
                    result.append(MetricSeriesSummary(
                        name: row.string(0)!, split: row.string(1)!, count: Int(row.int(2)!),
                        firstStep: Int(row.int(3)!), lastStep: Int(row.int(4)!),
                        lastValue: last, minValue: row.double(5), maxValue: row.double(6)))
                }
                return result
            }
        }
    }

    /// Every interned metric name.
    public func metricNames() throws -> [MetricNameRecord] {
        try withDB { db in
            try db.read {
                try db.fetch(MetricNameRecord.self, "SELECT id, name FROM metric_names ORDER BY name")
            }
        }
    }

    /// Every split name (train, val, test and any added on use).
    public func splits() throws -> [SplitRecord] {
        try withDB { db in
            try db.read {
                try db.fetch(SplitRecord.self, "SELECT id, name FROM splits ORDER BY id")
            }
        }
    }
}
