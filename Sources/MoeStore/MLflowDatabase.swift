import Foundation

/// One run of an MLflow tracking database, as its tables hold it.
public struct MLflowRun: Sendable {
    public struct Metric: Sendable {
        public var key: String
        public var step: Int64
        public var timestamp: Int64
        /// NaN when MLflow flagged the value `is_nan`.
        public var value: Double
    }

    public var runId: String
    public var name: String?
    public var experiment: String
    /// FINISHED, FAILED, KILLED, RUNNING or SCHEDULED.
    public var status: String
    /// `active` or `deleted`.
    public var lifecycleStage: String
    public var params: [(key: String, value: String)]
    /// In the order MLflow recorded them (timestamp, then insertion).
    public var metrics: [Metric]
}

/// Reads the SQLite backend of an MLflow tracking server (`sqlite:///mlflow.db`): its
/// `experiments`, `runs`, `params` and `metrics` tables, opened read-only. This is the one
/// module that speaks SQL, so the foreign database is read here too.
public enum MLflowDatabase {
    public static func runs(path: String) throws -> [MLflowRun] {
        guard FileManager.default.fileExists(atPath: path) else { throw StoreError.notFound(path: path) }
        let db = try Connection(path: path, busyTimeout: 5, access: .readOnly)
        defer { db.close() }
        return try db.read {
            var tables = Set<String>()
            try db.query("SELECT name FROM sqlite_master WHERE type = 'table'") { tables.insert($0.string(0) ?? "") }
            let needed = ["experiments", "runs", "params", "metrics"]
            guard needed.allSatisfy(tables.contains) else {
                throw StoreError.invalidArgument("\(path) is not an MLflow tracking database: it lacks the table(s) \(needed.filter { !tables.contains($0) }.joined(separator: ", "))")
            }
            var runs: [MLflowRun] = []
            var index: [String: Int] = [:]
            try db.query("""
                SELECT r.run_uuid, r.name, e.name, r.status, r.lifecycle_stage FROM runs r
                JOIN experiments e ON e.experiment_id = r.experiment_id ORDER BY r.start_time, r.run_uuid
                """) { row in
                index[row.string(0)!] = runs.count
                runs.append(MLflowRun(runId: row.string(0)!, name: row.string(1), experiment: row.string(2) ?? "",
                                      status: row.string(3) ?? "", lifecycleStage: row.string(4) ?? "active",
                                      params: [], metrics: []))
            }
            try db.query("SELECT run_uuid, key, value FROM params ORDER BY run_uuid, key") { row in
                guard let i = index[row.string(0) ?? ""] else { return }
                runs[i].params.append((row.string(1) ?? "", row.string(2) ?? ""))
            }
            try db.query("SELECT run_uuid, key, step, timestamp, value, is_nan FROM metrics ORDER BY run_uuid, key, step, timestamp") { row in
                guard let i = index[row.string(0) ?? ""] else { return }
                let isNaN = (row.int(5) ?? 0) != 0 || row.isNull(4)
                runs[i].metrics.append(MLflowRun.Metric(key: row.string(1) ?? "", step: row.int(2) ?? 0, timestamp: row.int(3) ?? 0,
                                                        value: isNaN ? .nan : row.double(4)!))
            }
            return runs
        }
    }
}
