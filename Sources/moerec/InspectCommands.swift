import ArgumentParser
import Foundation
import MoeCheckpoint
import MoeExperiment
import MoeJSON
import MoeMetricNames
import MoeStore

struct Runs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List runs: hash, kind, regime, experts, seed, task, status, best validation accuracy, steps, wall time.",
        discussion: """
        --where filters on status, kind, hash, parent, tag, sweep or any config key, with = != < <= > >= \
        joined by `and`. JSON and CSV rows carry the full hash and every column.

        Examples:
          moerec runs --where "kind=finetune and experts>=4"
          moerec runs --where "status=interrupted" --format json
        """)

    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("where"), help: "Filter expression, e.g. \"regime=moe and seed=0\".") var whereExpression: String?
    @Option(help: "table, json or csv.") var format: OutputFormat = .table

    func run() throws {
        let store = try global.readStore()
        let filter = try whereExpression.map { try WhereFilter(runs: $0) }
        let runs = try store.listRuns(filter: filter, keyFields: ["regime", "experts", "seed", "task", "train_size", "baseline"])
        // Runs trained under Slurm add the column of their job (ARRAYJOB_TASK).
        let slurm = runs.contains { $0.slurmJob != nil }
        // Imported runs add the column of their origin (the format they were imported from).
        let imported = runs.contains { $0.importSource != nil }
        let header = ["hash", "kind", "regime", "experts", "seed", "task", "train_size", "status", "best_val_acc", "steps", "wall_s"]
            + (slurm ? ["slurm_job"] : []) + (imported ? ["imported_from"] : [])
        // A baseline run's "regime" is its classifier (majority, linear).
        func regime(_ r: RunSummary) -> String {
            switch r.kind {
            case .finetune: return r.regime ?? ""
            case .baseline: return r.keyFields["baseline"]?.stringValue ?? ""
            case .pretrain: return ""
            }
        }
        /// The source format of an imported run (run-log, trainer, mlflow-file, mlflow-sqlite).
        func origin(_ r: RunSummary) -> String { r.importSource.map(ImportedRun.format(ofSource:)) ?? "" }
        func cells(_ r: RunSummary, full: Bool) -> [String] {
            let fields: [String] = [full ? r.hash : String(r.hash.prefix(12)), r.kind.rawValue,
             regime(r), r.experts.map(String.init) ?? "", r.seed.map(String.init) ?? "",
             r.kind == .pretrain ? "" : (r.task ?? ""), r.kind == .pretrain ? "" : (r.trainSize?.display ?? ""),
             r.status.rawValue, r.bestValAccuracy.map { String(format: "%.4f", $0) } ?? "",
             String(r.stepsDone), r.wallSeconds.map { String(format: "%.1f", $0) } ?? ""]
            return fields + (slurm ? [r.slurmJob ?? ""] : []) + (imported ? [origin(r)] : [])
        }
        switch format {
        case .table: print(TableOut.render(header: header, rows: runs.map { cells($0, full: false) }))
        case .csv:
            print(header.joined(separator: ","))
            for r in runs { print(cells(r, full: true).map(CSV.escape).joined(separator: ",")) }
        case .json:
            let rows: [JSONValue] = runs.map { r in
                var o: [String: JSONValue] = ["hash": .string(r.hash), "parent": r.parentHash.map { .string($0) } ?? .null,
                                              "kind": .string(r.kind.rawValue), "status": .string(r.status.rawValue),
                                              "steps": .int(Int64(r.stepsDone)), "created_at": .string(r.createdAt),
                                              "best_val_acc": r.bestValAccuracy.map { .double($0) } ?? .null,
                                              "best_val_loss": r.bestValLoss.map { .double($0) } ?? .null,
                                              "wall_seconds": r.wallSeconds.map { .double($0) } ?? .null]
                if let job = r.slurmJob { o["slurm_job"] = .string(job) }
                if let source = r.importSource { o["imported_from"] = .string(source) }
                for (k, v) in r.keyFields { o[k] = v }
                return .object(o)
            }
            print(try JSONValue.array(rows).canonicalString)
        }
    }
}

enum CSV {
    static func escape(_ s: String) -> String {
        s.contains(",") || s.contains("\"") || s.contains("\n") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a run: resolved config, lineage, environment, metric summary, checkpoints.",
        discussion: "Example: moerec show 3fa2c1")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run hash or unique prefix.") var hash: String

    func run() throws {
        let store = try global.readStore()
        let full = try store.resolve(prefix: hash)
        guard let r = try store.run(hash: full) else { throw InputError("no run \(hash)") }
        print("run         \(r.hash)")
        print("kind        \(r.kind.rawValue)    status \(r.status.rawValue)" + (r.failureReason.map { "    reason: \($0)" } ?? ""))
        let ancestors = try store.lineage(of: full).dropFirst().map { "\($0.hash.prefix(12)) (\($0.kind.rawValue))" }
        print("lineage     \(([String(r.hash.prefix(12))] + ancestors).joined(separator: " ← "))")
        print("dataset     \(r.datasetFingerprint)")
        print("numerics    \(r.numericsVersion)")
        if let source = r.importSource {
            // An imported run was trained elsewhere: no environment, no checkpoints.
            print("imported    \(source)")
            print("content     \(r.importFingerprint ?? "?") (SHA-256 of its status and metric points)")
        }
        let e = r.environment
        if r.importSource == nil { print("environment host=\(e.host ?? "?") os=\(e.os ?? "?") cpu=\(e.cpuModel ?? "?") blas=\(e.blasCore ?? "?") vector=\(e.vectorLevel ?? "?") threads=\(e.threads.map(String.init) ?? "?") moerec=\(e.moerecVersion ?? "?") commit=\(e.gitCommit ?? "?")"
              + (e.slurmJob.map { " slurm_job=\($0)" } ?? "")) }
        print("time        created \(r.createdAt)  started \(r.startedAt ?? "-")  finished \(r.finishedAt ?? "-")  wall \(r.wallSeconds.map { String(format: "%.1fs", $0) } ?? "-")  steps \(r.stepsDone)")
        let tags = try store.tags(runHash: full)
        if !tags.isEmpty { print("tags        \(tags.joined(separator: ", "))") }
        print("\nconfig")
        for (k, v) in (try JSONValue(parsing: r.configJSON).objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            print("  \(k.padding(toLength: 22, withPad: " ", startingAt: 0)) \(v.display)")
        }
        print("\nmetrics (last / min / max over the series)")
        let summary = try store.metricSummary(runHash: full).filter { !MetricName.isLoad($0.name) && !MetricName.isExpertSelection($0.name) }
        print(TableOut.render(header: ["split", "name", "points", "steps", "last", "min", "max"], rows: summary.map {
            [$0.split, $0.name, String($0.count), "\($0.firstStep)-\($0.lastStep)",
             $0.lastValue.map { String(format: "%.5g", $0) } ?? "", $0.minValue.map { String(format: "%.5g", $0) } ?? "",
             $0.maxValue.map { String(format: "%.5g", $0) } ?? ""]
        }))
        if let choice = try ExpertChoice.read(store: store, run: full) {
            print("\nexperts trained (scored on the parent's routing of the task's text)")
            for line in choice.lines { print("  " + line) }
        }
        print("\ncheckpoints")
        for c in try store.checkpoints(runHash: full) {
            let m = try CheckpointManifest(json: c.manifestJSON)
            let stored = (m.tensors + m.optimizer).reduce(0) { $0 + $1.storedSize }
            print("  step \(c.step)  tensors \(m.tensors.count)  optimizer \(m.optimizer.count)  \(String(format: "%.2f", Double(stored) / 1_048_576)) MiB  digest \(m.parameterDigest.prefix(16))")
        }
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two runs: config keys that differ, lineage, metric deltas, first differing step, changed parameter groups.",
        discussion: "Example: moerec diff 3fa2c1 9be04d")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "First run (hash or prefix).") var a: String
    @Argument(help: "Second run (hash or prefix).") var b: String

    func run() throws {
        let store = try global.readStore()
        let d = try RunDiff.compute(store: store, a: try store.resolve(prefix: a), b: try store.resolve(prefix: b))
        print("A \(d.a)\nB \(d.b)\n")
        print("config keys that differ")
        if d.configChanges.isEmpty { print("  (none)") }
        for c in d.configChanges { print("  \(c.key): \(c.a) → \(c.b)") }
        print("\nlineage")
        print("  A: \(d.lineageA.map { String($0.prefix(12)) }.joined(separator: " ← "))")
        print("  B: \(d.lineageB.map { String($0.prefix(12)) }.joined(separator: " ← "))")
        if d.lineageA.dropFirst() == d.lineageB.dropFirst() { print("  same ancestors") }
        print("\nmetrics")
        func f(_ x: Double?) -> String { x.map { String(format: "%.4f", $0) } ?? "—" }
        func delta(_ x: Double?, _ y: Double?) -> String { (x != nil && y != nil) ? String(format: "%+.4f", y! - x!) : "—" }
        print(TableOut.render(header: ["split", "metric", "final A", "final B", "Δ final", "best A", "best B", "Δ best"],
                              rows: d.metrics.map { [$0.split, $0.name, f($0.finalA), f($0.finalB), delta($0.finalA, $0.finalB),
                                                     f($0.bestA), f($0.bestB), delta($0.bestA, $0.bestB)] }))
        if let s = d.firstDifferentStep { print("\nfirst step where the series differ: \(s.step) (\(s.split)/\(s.name))") }
        else { print("\nshared metric series are identical") }
        if d.expertsA != nil || d.expertsB != nil {
            // Expert-specialized runs: which experts each trained, layer by layer.
            print("\nexperts trained")
            for (label, choice) in [("A", d.expertsA), ("B", d.expertsB)] {
                for line in choice?.lines ?? ["(all experts of the regime's groups)"] { print("  \(label): \(line)") }
            }
            let same = d.expertsA?.layers.map(\.selected) == d.expertsB?.layers.map(\.selected)
            print("  \(same ? "same experts" : "different experts")")
        }
        print("\nfinal parameters by group")
        print(TableOut.render(header: ["group", "tensors", "differ", "max |Δ|"], rows: d.groups.map {
            [$0.group, String($0.tensors), String($0.changed), String(format: "%.3g", $0.maxAbsDelta)]
        }))
        let changed = d.groups.filter { $0.changed > 0 }.map(\.group)
        print("groups that differ: \(changed.isEmpty ? "none" : changed.joined(separator: ", "))")
    }
}

struct Reproduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-execute a run in a scratch store and check it is bit-identical to the stored one.",
        discussion: """
        Compares every metric point (wall-clock timings excepted), the final checkpoint's \
        parameter digest, the step count and the dataset fingerprint, and checks the run's \
        records against each other as `moerec verify` does. Uses the thread count recorded with the run unless --threads is given. \
        Exit 0 when bit-identical, 1 otherwise.

        Example: moerec reproduce 3fa2c1 --format json
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run hash or unique prefix.") var hash: String
    @Option(help: "text or json.") var format: String = "text"

    func validate() throws {
        guard ["text", "json"].contains(format) else { throw ValidationError("--format \(format): must be text or json") }
    }

    func run() throws {
        let store = try global.readStore()
        let full = try store.resolve(prefix: hash)
        let explicitThreads = CommandLine.arguments.contains("--threads") ? global.threads : nil
        let reproducer = Reproducer(store: store)
        Signals.install(reproducer.stop)
        let report = try reproducer.reproduce(hash: full, threads: explicitThreads) {
            FileHandle.standardError.write(Data(($0 + "\n").utf8))
        }
        if format == "json" {
            let divergence: JSONValue = report.firstDivergence.map { d in
                .object(["step": .int(Int64(d.step)), "split": .string(d.split), "metric": .string(d.name),
                         "stored": d.stored.map { .double($0) } ?? .null, "new": d.new.map { .double($0) } ?? .null])
            } ?? .null
            let env: JSONValue = .object(Dictionary(uniqueKeysWithValues: report.environmentDiff.map {
                ($0.field, JSONValue.object(["stored": .string($0.stored), "current": .string($0.current)]))
            }))
            print(try JSONValue.object(["hash": .string(report.hash), "identical": .bool(report.identical),
                                        "first_divergence": divergence, "checkpoint_match": .bool(report.checkpointMatch),
                                        "stored_digest": report.storedDigest.map { .string($0) } ?? .null,
                                        "new_digest": report.newDigest.map { .string($0) } ?? .null,
                                        "points_compared": .int(Int64(report.pointsCompared)),
                                        "corrupt_objects": .array(report.corruptObjects.map { .string($0) }),
                                        "record_mismatches": .array(report.recordMismatches.map { .string($0) }),
                                        "environment_diff": env]).canonicalString)
        } else {
            if report.identical {
                print("\(report.hash)  bit-identical (\(report.pointsCompared) metric points, checkpoint digest \(report.newDigest?.prefix(16) ?? ""))")
            } else {
                print("\(report.hash)  NOT identical")
                if let d = report.firstDivergence {
                    print("  first divergence: step \(d.step) \(d.split)/\(d.name): stored \(d.stored.map { "\($0)" } ?? "absent") vs new \(d.new.map { "\($0)" } ?? "absent")")
                }
                print("  checkpoint digest: stored \(report.storedDigest ?? "none") vs new \(report.newDigest ?? "none")")
                for object in report.corruptObjects { print("  stored checkpoint object corrupt: \(object)") }
                for mismatch in report.recordMismatches { print("  record differs: \(mismatch)") }
            }
            for e in report.environmentDiff { print("  environment differs: \(e.field) stored \(e.stored) vs now \(e.current)") }
        }
        if !report.identical { throw ExitCode(1) }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the store: re-hash checkpoint objects and check each run's records against each other (exit 1 on any problem).",
        discussion: """
        Objects: every recorded object is inflated and re-hashed. Records: each run's hash must \
        be 64 lowercase hex digits and its config one JSON object (a row written outside \
        moerec may break either), and its hash must match its config, parent, dataset \
        fingerprint and numerics version; each checkpoint's manifest must be the run's, at its \
        step, with entries that hash to the digests written with them (an edited entry or two swapped tensors); a completed run must have a final \
        checkpoint at its recorded step count. Each problem names the run, step and tensor.

        Examples:
          moerec verify
          moerec verify 3fa2c1
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Only this run (hash or prefix).") var hash: String?

    func run() throws {
        let store = try global.readStore()
        let objects = ObjectStore(root: Executor.objectsDirectory(forStore: store.path))
        let blobs: [BlobRecord]
        let runs: [RunRecord]
        if let hash {
            let full = try store.resolve(prefix: hash)
            blobs = try store.blobs(forRun: full)
            runs = try store.run(hash: full).map { [$0] } ?? []
        } else {
            blobs = try store.allBlobs()
            runs = try store.allRuns()
        }
        let problems = objects.verifyAll(expected: blobs.map { ($0.sha256, Int($0.rawSize)) })
        var owners: [String: [String]] = [:]
        if !problems.isEmpty {
            // Name the runs and tensors that reference each bad object.
            // A run whose hash is malformed has no checkpoints to name (its own problem is reported below).
            for record in try store.allRuns() where RunIdentity.isValidHash(record.hash) {
                for c in try store.checkpoints(runHash: record.hash) {
                    guard let m = try? CheckpointManifest(json: c.manifestJSON) else { continue }
                    for t in m.tensors + m.optimizer { owners[t.sha256, default: []].append("\(record.hash.prefix(12)) step \(c.step) \(t.name)") }
                }
            }
        }
        for p in problems {
            print("\(p.kind): object \(p.sha256) — \(p.error)")
            for o in (owners[p.sha256] ?? []).prefix(5) { print("    used by \(o)") }
        }
        let inconsistent = try StoreConsistency.check(store: store, runs: runs)
        for p in inconsistent { print("inconsistent: \(p)") }
        let total = problems.count + inconsistent.count
        print("\(blobs.count) objects and \(runs.count) run\(runs.count == 1 ? "" : "s") checked, \(total) problem\(total == 1 ? "" : "s")")
        if total > 0 { throw ExitCode(1) }
    }
}

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the store (database and checkpoint objects) into a new directory, safely while it is in use.",
        discussion: """
        The database is copied with SQLite's online backup (one consistent snapshot, even while \
        runs are writing); then every object the snapshot refers to is read, checked against \
        its SHA-256 and written into DST/objects/. Copying the .sqlite file by hand can miss \
        what is still in its -wal file; this cannot. DST must be a new or empty directory.

        Example:
          moerec backup /mnt/archive/runs-2025-01-31
          moerec runs --store /mnt/archive/runs-2025-01-31/moerec.sqlite
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "A new or empty directory for the copy.") var destination: String

    func validate() throws {
        if destination.isEmpty { throw ValidationError("DST: empty path") }
    }

    func run() throws {
        let store = try global.readStore()
        let summary = try StoreBackup.copy(store, into: destination)
        print("\(summary.database): \(summary.runs) runs, \(summary.objects) objects copied and verified")
    }
}
