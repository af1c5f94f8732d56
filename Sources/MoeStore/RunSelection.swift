import Foundation

/// Which runs a query reads: of one kind, in one status, matching a `--where` filter. Each
/// part is optional; an empty selection is every run.
public struct RunSelection: Equatable, Sendable {
    public var kind: RunKind?
    public var status: RunStatus?
    public var filter: WhereFilter?

    public init(kind: RunKind? = nil, status: RunStatus? = nil, filter: WhereFilter? = nil) {
        self.kind = kind
        self.status = status
        self.filter = filter
    }

    /// A condition on `runs` aliased `r`, with its parameters in placeholder order.
    var condition: (sql: String, parameters: [SQLValue]) {
        get throws {
            var terms: [String] = []
            var parameters: [SQLValue] = []
            if let kind {
                terms.append("r.kind = ?")
                parameters.append(.text(kind.rawValue))
            }
            if let status {
                terms.append("r.status = ?")
                parameters.append(.text(status.rawValue))
            }
            if let filter {
                terms.append("(\(filter.sql))")
                parameters += try filter.parameters.map(SQLValue.init)
            }
            return (terms.isEmpty ? "1" : terms.joined(separator: " AND "), parameters)
        }
    }
}

/// How `Store.seriesValues` sums up one series of a run.
public enum SeriesAggregate: Sendable {
    /// The value at the series' first step.
    case first
    /// The mean over its points (NaN points left out).
    case mean
    /// The sum over its points (NaN points left out).
    case sum
}

extension Store {
    /// The number of runs in `selection`.
    public func runCount(_ selection: RunSelection) throws -> Int {
        let (condition, parameters) = try selection.condition
        return try withDB { db in
            try db.read { Int(try db.scalar("SELECT count(*) FROM runs r WHERE \(condition)", parameters)?.int ?? 0) }
        }
    }

    /// The runs in `selection`, in the order they were stored (oldest row first).
    public func runs(_ selection: RunSelection) throws -> [RunRecord] {
        let (condition, parameters) = try selection.condition
        return try withDB { db in
            try db.read {
                try db.fetch(RunRecord.self, "SELECT \(Store.runColumns) FROM runs r WHERE \(condition) ORDER BY r.id",
                             parameters)
            }
        }
    }

    /// For each run in `selection` that has points in series (`name`, `split`), the series
    /// summed up by `aggregate`, by run hash. A run whose value is missing or NaN is absent.
    public func seriesValues(_ aggregate: SeriesAggregate, name: String, split: String,
                             of selection: RunSelection) throws -> [String: Double]
    {
        struct RunValue: Decodable {
            var hash: String
            var value: Double?
        }
        let (condition, parameters) = try selection.condition
        // One range of the metrics primary key per run, read in step order.
        let series = "m.run_id = r.id AND m.name_id = (SELECT id FROM metric_names WHERE name = ?) AND m.split = (SELECT id FROM splits WHERE name = ?)"
        let value: String
        switch aggregate {
        case .first: value = "(SELECT m.value FROM metrics m WHERE \(series) ORDER BY m.step LIMIT 1)"
        case .mean: value = "(SELECT avg(m.value) FROM metrics m WHERE \(series))"
        case .sum: value = "(SELECT sum(m.value) FROM metrics m WHERE \(series))"
        }
        let rows = try withDB { db in
            try db.read {
                try db.fetch(RunValue.self, "SELECT r.hash, \(value) AS value FROM runs r WHERE \(condition)",
                             [.text(name), .text(split)] + parameters)
            }
        }
        var values: [String: Double] = [:]
        for row in rows { if let v = row.value { values[row.hash] = v } }
        return values
    }

    /// The points of the series `names` × `splits` of every run in `selection`, ordered by
    /// (run hash, step, split, name). For reading a few evaluation series of many runs.
    public func metricPoints(names: [String], splits: [String], of selection: RunSelection) throws -> [MetricPoint] {
        guard !names.isEmpty, !splits.isEmpty else { return [] }
        let (condition, parameters) = try selection.condition
        let list = { (count: Int) in Array(repeating: "?", count: count).joined(separator: ", ") }
        let sql = """
            SELECT r.hash AS run_hash, m.step, s.name AS split, n.name AS name, m.value
            FROM metrics m
            JOIN runs r ON r.id = m.run_id
            JOIN metric_names n ON n.id = m.name_id
            JOIN splits s ON s.id = m.split
            WHERE m.run_id IN (SELECT r.id FROM runs r WHERE \(condition))
              AND m.name_id IN (SELECT id FROM metric_names WHERE name IN (\(list(names.count))))
              AND m.split IN (SELECT id FROM splits WHERE name IN (\(list(splits.count))))
            ORDER BY r.hash, m.step, s.name, n.name
            """
        return try withDB { db in
            try db.read {
                try db.fetch(MetricPoint.self, sql, parameters + names.map { .text($0) } + splits.map { .text($0) })
            }
        }
    }

    /// Every sweep membership of the runs in `selection`, by sweep then order of joining.
    public func sweepMemberships(of selection: RunSelection) throws -> [SweepMemberRecord] {
        let (condition, parameters) = try selection.condition
        return try withDB { db in
            try db.read {
                try db.fetch(SweepMemberRecord.self, """
                    SELECT sm.sweep_id, sm.run_hash FROM sweep_members sm
                    WHERE sm.run_hash IN (SELECT r.hash FROM runs r WHERE \(condition))
                    ORDER BY sm.sweep_id, sm.id
                    """, parameters)
            }
        }
    }
}
