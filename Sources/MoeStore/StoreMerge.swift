import Foundation

/// A run completed in both stores with different results: neither is overwritten.
public struct MergeConflict: Sendable, Equatable {
    public let hash: String
    /// What differs: metric points, the final parameters, the step count.
    public let differences: [String]
    /// The environment that trained each side (host, CPU, BLAS core, threads, version).
    public let ours: RunEnvironment
    public let theirs: RunEnvironment
}

/// What `Store.merge(from:copyObjects:)` did.
public struct MergeSummary: Sendable, Equatable {
    /// Runs the destination did not have.
    public var runsAdded = 0
    /// Runs the destination had unfinished (queued, interrupted, failed) and the source had
    /// further along: their rows, metrics and checkpoints now come from the source.
    public var runsReplaced = 0
    /// Source runs that were running or interrupted, added as interrupted (they resume).
    public var runsUnfinished = 0
    public var metricPoints = 0
    public var checkpoints = 0
    public var sweepsAdded = 0
    public var membersAdded = 0
    public var tagsAdded = 0
    /// Objects the source's copied checkpoints use (all verified and present in the destination).
    public var objects = 0
    public var conflicts: [MergeConflict] = []
}

extension Store {
    /// Folds the store at `sourcePath` into this one: runs, lineage, metrics, checkpoints,
    /// blob records, sweeps (with their members, in order) and tags.
    ///
    /// - A run the destination lacks is added; one running in the source is added as
    ///   interrupted (with its checkpoints, so it resumes here), never as completed.
    /// - A run the destination has unfinished and the source completed (or took further) is
    ///   replaced by the source's row, metrics and checkpoints.
    /// - A run completed in both is compared: metric points (all but `timing`), the final
    ///   checkpoint's objects and the step count. A difference is a reproducibility
    ///   conflict: reported with both environments, nothing overwritten.
    /// - Sweeps are matched by name, spec and creation time, so merging again adds nothing.
    ///
    /// `copyObjects` gets the SHA-256 of every object the copied checkpoints use before
    /// anything is written; it must copy each into this store's object directory after
    /// checking it, or throw, which ends the merge with the database unchanged. The writes
    /// are one transaction: a failure leaves this store as it was.
    ///
    /// With `lineageOf`, only that run and its ancestors are merged, without sweeps or tags:
    /// how a fine-tuning shard receives its parent.
    public func merge(from sourcePath: String, lineageOf: String? = nil,
                      copyObjects: ([String]) throws -> Void) throws -> MergeSummary {
        guard mode == .readWrite else { throw StoreError.invalidArgument("store '\(path)' is open read-only") }
        let resolvedSource = URL(fileURLWithPath: sourcePath).standardizedFileURL.path
        guard resolvedSource != URL(fileURLWithPath: path).standardizedFileURL.path else {
            throw StoreError.invalidArgument("cannot merge store '\(sourcePath)' into itself")
        }
        // The source must be a store this build can read (not newer, not another database).
        do { try Store(path: sourcePath, mode: .readOnly).close() }
        return try withDB { db in
            try db.query("ATTACH DATABASE ? AS src", [.text(sourcePath)]) { _ in }
            defer { try? db.execute("DETACH DATABASE src") }
            let first = try db.read { try mergePlan(db, from: sourcePath, lineageOf: lineageOf) }
            try copyObjects(first.blobs)
            return try db.write {
                // Decided again under the write lock: another writer may have moved on.
                let plan = try mergePlan(db, from: sourcePath, lineageOf: lineageOf)
                guard Set(plan.blobs).isSubset(of: Set(first.blobs)) else {
                    throw StoreError.invalidArgument("the stores changed while merging; run the merge again")
                }
                return try applyMerge(plan, db, runsOnly: lineageOf != nil)
            }
        }
    }

    struct MergePlan {
        enum Action { case add, replace }
        /// Source runs to copy, in the source's row order (parents first).
        var copies: [(hash: String, sourceId: Int64, action: Action)] = []
        var conflicts: [MergeConflict] = []
        var blobs: [String] = []
    }

    private func mergePlan(_ db: Connection, from sourcePath: String, lineageOf: String?) throws -> MergePlan {
        var plan = MergePlan()
        struct Side { var id: Int64; var status: RunStatus; var steps: Int64 }
        var source: [(hash: String, side: Side)] = []
        var parents: [String: String] = [:]
        try db.query("SELECT id, hash, status, steps_done, parent_hash FROM src.runs ORDER BY id") { row in
            source.append((row.string(1)!, Side(id: row.int(0)!, status: RunStatus(rawValue: row.string(2)!) ?? .queued,
                                                steps: row.int(3) ?? 0)))
            if let parent = row.string(4) { parents[row.string(1)!] = parent }
        }
        if let lineageOf {
            guard source.contains(where: { $0.hash == lineageOf }) else { throw StoreError.unknownRun(lineageOf) }
            var lineage: Set<String> = [lineageOf]
            var next = parents[lineageOf]
            while let hash = next, lineage.insert(hash).inserted { next = parents[hash] }
            source.removeAll { !lineage.contains($0.hash) }
        }
        for (hash, theirs) in source {
            var mine: Side?
            try db.query("SELECT id, status, steps_done FROM main.runs WHERE hash = ?", [.text(hash)]) { row in
                mine = Side(id: row.int(0)!, status: RunStatus(rawValue: row.string(1)!) ?? .queued, steps: row.int(2) ?? 0)
            }
            guard let mine else {
                plan.copies.append((hash, theirs.id, .add))
                continue
            }
            switch (mine.status, theirs.status) {
            case (.completed, .completed):
                let differences = try mergeDifferences(db, mine: mine.id, theirs: theirs.id)
                if !differences.isEmpty {
                    plan.conflicts.append(MergeConflict(hash: hash, differences: differences,
                                                        ours: try environment(db, schema: "main", id: mine.id),
                                                        theirs: try environment(db, schema: "src", id: theirs.id)))
                }
            case (.completed, _), (.running, _):
                // Ours is final, or a live trainer here owns the run.
                break
            case (_, .completed):
                plan.copies.append((hash, theirs.id, .replace))
            case (_, .failed), (_, .interrupted), (_, .running):
                if theirs.steps > mine.steps { plan.copies.append((hash, theirs.id, .replace)) }
            case (_, .queued):
                break
            }
        }
        // The schema leaves a run's hash and config to the code that writes them: a row
        // written outside moerec in the source is refused here, before anything is copied.
        for copy in plan.copies where copy.action == .add {
            var config = ""
            try db.query("SELECT config_json FROM src.runs WHERE id = ?", [.int(copy.sourceId)]) { config = $0.string(0) ?? "" }
            if let reason = Store.malformation(hash: copy.hash, configJSON: config) {
                throw StoreError.invalidSourceRun(path: sourcePath, hash: copy.hash, reason: reason)
            }
        }
        var blobs = Set<String>()
        for copy in plan.copies {
            try db.query("""
                SELECT DISTINCT cb.sha256 FROM src.checkpoint_blobs cb JOIN src.checkpoints c ON c.id = cb.checkpoint_id
                WHERE c.run_id = ?
                """, [.int(copy.sourceId)]) { blobs.insert($0.string(0)!) }
        }
        plan.blobs = blobs.sorted()
        return plan
    }

    /// What differs between two completed runs of one hash.
    private func mergeDifferences(_ db: Connection, mine: Int64, theirs: Int64) throws -> [String] {
        func points(_ schema: String, _ id: Int64) -> String {
            """
            SELECT n.name, s.name, m.step, m.value FROM \(schema).metrics m
            JOIN \(schema).metric_names n ON n.id = m.name_id JOIN \(schema).splits s ON s.id = m.split
            WHERE m.run_id = \(id) AND s.name <> 'timing'
            """
        }
        var differences: [String] = []
        var onlyOurs = 0, onlyTheirs = 0
        try db.query("SELECT count(*) FROM (\(points("main", mine)) EXCEPT \(points("src", theirs)))") { onlyOurs = Int($0.int(0) ?? 0) }
        try db.query("SELECT count(*) FROM (\(points("src", theirs)) EXCEPT \(points("main", mine)))") { onlyTheirs = Int($0.int(0) ?? 0) }
        if onlyOurs + onlyTheirs > 0 {
            differences.append("metric points: \(onlyOurs) here differ from or are missing in the source, \(onlyTheirs) the other way")
        }
        func finalObjects(_ schema: String, _ id: Int64) throws -> String {
            var objects = ""
            try db.query("""
                SELECT group_concat(sha256, ',') FROM (SELECT cb.sha256 FROM \(schema).checkpoint_blobs cb
                WHERE cb.checkpoint_id = (SELECT id FROM \(schema).checkpoints WHERE run_id = ? ORDER BY step DESC LIMIT 1)
                ORDER BY cb.sha256)
                """, [.int(id)]) { objects = $0.string(0) ?? "" }
            return objects
        }
        if try finalObjects("main", mine) != finalObjects("src", theirs) {
            differences.append("final parameters: the last checkpoints' objects differ")
        }
        var steps: [Int64] = []
        try db.query("SELECT (SELECT steps_done FROM main.runs WHERE id = ?), (SELECT steps_done FROM src.runs WHERE id = ?)",
                     [.int(mine), .int(theirs)]) { steps = [$0.int(0) ?? -1, $0.int(1) ?? -1] }
        if steps.count == 2 && steps[0] != steps[1] { differences.append("steps_done: \(steps[0]) here, \(steps[1]) in the source") }
        return differences
    }

    /// The columns later migrations added to `runs` (`Store.runColumnsAddedLater`), as a
    /// select list over `schema`: a store an older moerec wrote lacks them, and they read
    /// as NULL there.
    static func addedRunColumns(_ db: Connection, schema: String) throws -> String {
        var present = Set<String>()
        try db.query("SELECT name FROM pragma_table_info('runs', ?)", [.text(schema)]) { present.insert($0.string(0)!) }
        return runColumnsAddedLater.map { present.contains($0) ? $0 : "NULL" }.joined(separator: ", ")
    }

    private func environment(_ db: Connection, schema: String, id: Int64) throws -> RunEnvironment {
        var env = RunEnvironment()
        // The added columns, in `runColumnsAddedLater` order: slurm_job, vector_level.
        let added = try Store.addedRunColumns(db, schema: schema)
        try db.query("SELECT host, os, cpu_model, blas_core, threads, moerec_version, git_commit, \(added) FROM \(schema).runs WHERE id = ?",
                     [.int(id)]) { row in
            env = RunEnvironment(host: row.string(0), os: row.string(1), cpuModel: row.string(2), blasCore: row.string(3),
                                 threads: row.int(4).map(Int.init), moerecVersion: row.string(5), gitCommit: row.string(6),
                                 slurmJob: row.string(7), vectorLevel: row.string(8))
        }
        return env
    }

    private func applyMerge(_ plan: MergePlan, _ db: Connection, runsOnly: Bool) throws -> MergeSummary {
        var summary = MergeSummary()
        summary.conflicts = plan.conflicts
        summary.objects = plan.blobs.count
        let lifecycle = """
            status, host, os, cpu_model, blas_core, threads, moerec_version, git_commit, \(Store.runColumnsAddedLater.joined(separator: ", ")),
            pid, started_at, finished_at, wall_seconds, steps_done, failure_reason, failure_step
            """
        // A run still running in the source is interrupted here: it resumes from its checkpoint.
        let sourceLifecycle = """
            CASE status WHEN 'running' THEN 'interrupted' ELSE status END, host, os, cpu_model, blas_core, threads,
            moerec_version, git_commit, \(try Store.addedRunColumns(db, schema: "src")), pid, started_at, finished_at, wall_seconds, steps_done,
            CASE status WHEN 'running' THEN coalesce(failure_reason, 'running in the merged store when it was merged')
                 ELSE failure_reason END, failure_step
            """
        try db.execute("INSERT INTO main.metric_names (name) SELECT name FROM src.metric_names WHERE true ON CONFLICT (name) DO NOTHING")
        try db.execute("INSERT INTO main.splits (name) SELECT name FROM src.splits WHERE true ON CONFLICT (name) DO NOTHING")
        for blob in plan.blobs {
            try db.query("""
                INSERT INTO main.blobs (sha256, raw_size, stored_size, location, created_at)
                SELECT sha256, raw_size, stored_size, location, created_at FROM src.blobs WHERE sha256 = ?
                ON CONFLICT (sha256) DO NOTHING
                """, [.text(blob)])
            var sizes: [Int64?] = []
            try db.query("SELECT (SELECT raw_size FROM main.blobs WHERE sha256 = ?1), (SELECT raw_size FROM src.blobs WHERE sha256 = ?1)",
                         [.text(blob)]) { sizes = [$0.int(0), $0.int(1)] }
            if sizes.count == 2, let mine = sizes[0], let theirs = sizes[1], mine != theirs {
                throw StoreError.blobConflict(sha256: blob, recordedRawSize: mine, newRawSize: theirs)
            }
        }
        for copy in plan.copies {
            var status = ""
            try db.query("SELECT status FROM src.runs WHERE id = ?", [.int(copy.sourceId)]) { status = $0.string(0) ?? "" }
            if status == RunStatus.running.rawValue || status == RunStatus.interrupted.rawValue { summary.runsUnfinished += 1 }
            switch copy.action {
            case .add:
                try db.query("""
                    INSERT INTO main.runs (hash, parent_hash, kind, config_json, dataset_fingerprint, numerics_version, created_at,
                                           \(lifecycle))
                    SELECT hash, parent_hash, kind, config_json, dataset_fingerprint, numerics_version, created_at, \(sourceLifecycle)
                    FROM src.runs WHERE id = ?
                    """, [.int(copy.sourceId)])
                summary.runsAdded += 1
            case .replace:
                try db.query("UPDATE main.runs SET (\(lifecycle)) = (SELECT \(sourceLifecycle) FROM src.runs WHERE id = ?) WHERE hash = ?",
                             [.int(copy.sourceId), .text(copy.hash)])
                try db.query("DELETE FROM main.metrics WHERE run_id = (SELECT id FROM main.runs WHERE hash = ?)", [.text(copy.hash)])
                try db.query("DELETE FROM main.checkpoints WHERE run_id = (SELECT id FROM main.runs WHERE hash = ?)", [.text(copy.hash)])
                summary.runsReplaced += 1
            }
            let target = try db.scalar("SELECT id FROM main.runs WHERE hash = ?", [.text(copy.hash)])?.int ?? 0
            try db.query("""
                INSERT INTO main.metrics (run_id, name_id, split, step, value)
                SELECT ?, mn.id, ms.id, m.step, m.value FROM src.metrics m
                JOIN src.metric_names sn ON sn.id = m.name_id JOIN main.metric_names mn ON mn.name = sn.name
                JOIN src.splits ss ON ss.id = m.split JOIN main.splits ms ON ms.name = ss.name
                WHERE m.run_id = ?
                """, [.int(target), .int(copy.sourceId)])
            summary.metricPoints += db.changes
            var checkpoints: [(id: Int64, step: Int64)] = []
            try db.query("SELECT id, step FROM src.checkpoints WHERE run_id = ? ORDER BY step", [.int(copy.sourceId)]) {
                checkpoints.append(($0.int(0)!, $0.int(1)!))
            }
            for checkpoint in checkpoints {
                try db.query("""
                    INSERT INTO main.checkpoints (run_id, step, manifest_json, created_at)
                    SELECT ?, step, manifest_json, created_at FROM src.checkpoints WHERE id = ?
                    """, [.int(target), .int(checkpoint.id)])
                let id = db.lastInsertRowID
                try db.query("INSERT INTO main.checkpoint_blobs (checkpoint_id, sha256) SELECT ?, sha256 FROM src.checkpoint_blobs WHERE checkpoint_id = ?",
                             [.int(id), .int(checkpoint.id)])
                summary.checkpoints += 1
            }
        }
        if runsOnly { return summary }
        // Sweeps: the same sweep is the same name, spec and creation time.
        var sweeps: [(id: Int64, name: String, spec: String, created: String)] = []
        try db.query("SELECT id, name, spec_json, created_at FROM src.sweeps ORDER BY id") {
            sweeps.append(($0.int(0)!, $0.string(1)!, $0.string(2)!, $0.string(3)!))
        }
        for sweep in sweeps {
            var target = try db.scalar("SELECT id FROM main.sweeps WHERE name = ? AND spec_json = ? AND created_at = ?",
                                       [.text(sweep.name), .text(sweep.spec), .text(sweep.created)])?.int
            if target == nil {
                try db.query("INSERT INTO main.sweeps (name, spec_json, created_at) VALUES (?, ?, ?)",
                             [.text(sweep.name), .text(sweep.spec), .text(sweep.created)])
                target = db.lastInsertRowID
                summary.sweepsAdded += 1
            }
            try db.query("""
                INSERT INTO main.sweep_members (sweep_id, run_hash) SELECT ?, run_hash FROM src.sweep_members
                WHERE sweep_id = ? ORDER BY id ON CONFLICT DO NOTHING
                """, [.int(target!), .int(sweep.id)])
            summary.membersAdded += db.changes
        }
        try db.execute("""
            INSERT INTO main.tags (run_id, tag) SELECT mr.id, t.tag FROM src.tags t
            JOIN src.runs sr ON sr.id = t.run_id JOIN main.runs mr ON mr.hash = sr.hash WHERE true ON CONFLICT DO NOTHING
            """)
        summary.tagsAdded = db.changes
        return summary
    }
}
