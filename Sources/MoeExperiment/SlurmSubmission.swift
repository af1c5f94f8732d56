import Foundation
import MoeModel
import MoeStore
import MoeTrain

/// How a study's runs are submitted to Slurm (`sweep --launcher slurm`).
public struct SlurmOptions: Sendable {
    /// The moerec binary the tasks run (an absolute path every node can reach).
    public var executable: String
    public var partition: String?
    /// `--time` of every job (e.g. "2:00:00").
    public var timeLimit: String?
    public var account: String?
    public var qos: String?
    /// More `#SBATCH` lines, each an sbatch option (e.g. "--constraint=avx512").
    public var extraLines: [String] = []
    /// Memory per task in MiB; nil: the model's own estimate.
    public var memoryMiB: Int?
    /// The cluster's MaxArraySize: an array's indices stay below it.
    public var maxArraySize = 1001
    /// Print the scripts, submit and write nothing.
    public var dryRun = false
    /// The sbatch and squeue commands (a test may name others).
    public var sbatch = "sbatch"
    public var squeue = "squeue"

    public init(executable: String) { self.executable = executable }
}

/// What a Slurm submission wrote and submitted.
public struct SlurmSubmission: Sendable {
    /// The directory holding this submission's scripts, task configs, shard stores and logs.
    public let directory: String
    /// Runs submitted per stage (parents, cells); 0 when all were completed.
    public let parents: Int
    public let cells: Int
    /// (stage, job id) of every job submitted, in order.
    public let jobs: [(stage: String, id: String)]
    /// The scripts, by file name (what `--dry-run` prints).
    public let scripts: [(name: String, text: String)]
    /// The study's sweeps in the main store.
    public let sweepIds: [Int64]
}

extension StudyExecutor {
    /// Memory a task needs, in MiB: parameters with their gradients and two optimizer
    /// moments, the training batch's activations, and 512 MiB for the process and its data.
    public static func taskMemoryMiB(_ config: RunConfig) -> Int {
        let model = config.model(classes: config.isFinetune ? 64 : 0)
        let parameters = ParameterLayout(model).count * 4 * 4
        let activations = model.activationBytes(batch: config.batchSize, time: model.context)
        return (parameters + activations) / (1 << 20) + 512
    }

    /// Submits the study to Slurm as job arrays, one task per run, each training into its
    /// own shard store under `shards/` next to the store (objects go straight into the
    /// store's shared object directory): stage 1 the pretraining parents not completed, a
    /// job merging them, stage 2 the cells not completed (after that merge), and a last
    /// job merging stage 2 and writing the study's report tables. Baselines are fitted
    /// here. Shards left by an earlier submission are merged first, so running the same
    /// command again submits only what is not completed; a task first takes its run's
    /// lineage from the store, so an interrupted run resumes from its checkpoint.
    ///
    /// Everything is checked before anything is written or submitted: sbatch on the PATH,
    /// a writable shard directory, every run fitting `--mem`. `storePath` is the store the
    /// scripts name (the executor's, unless a dry run plans against a scratch store).
    public func submit(_ checked: Checked, slurm: SlurmOptions, storePath: String? = nil) throws -> SlurmSubmission {
        let store = executor.store
        let mainStore = URL(fileURLWithPath: storePath ?? store.path).standardizedFileURL.path
        let storeDir = URL(fileURLWithPath: mainStore).deletingLastPathComponent()
        let shardRoot = storeDir.appendingPathComponent("shards")
        if !slurm.dryRun { try StudyExecutor.checkSlurmSetUp(sbatch: slurm.sbatch, storePath: mainStore) }
        // Stage 1: every distinct parent, planned (not trained); stage 2 planned against them.
        let parents = try planParents(checked)
        let cellPlans = try planCells(checked, parents: parents)
        if let asked = slurm.memoryMiB {
            try StudyExecutor.checkMemory(parents.plans.map(\.config) + cellPlans.pending.map(\.plan.config), memoryMiB: asked)
        }
        if !slurm.dryRun {
            try StudyExecutor.checkNothingPending(shardRoot, squeue: slurm.squeue)
            try mergeEarlierShards(shardRoot)
        }
        var todoParents: [PlannedRun] = []
        for plan in parents.plans where try store.run(hash: plan.hash)?.status != .completed {
            todoParents.append(plan)
        }
        let prepared: Prepared
        if slurm.dryRun {
            let completed = Set(try cellPlans.pending.compactMap { try store.run(hash: $0.plan.hash)?.status == .completed ? $0.plan.hash : nil })
            prepared = Prepared(pending: cellPlans.pending, sweepIds: [], completed: completed, skipped: cellPlans.skipped,
                                baselines: cellPlans.baselines)
        } else {
            for plan in todoParents { try executor.register(plan) }
            prepared = try register(cellPlans)
            try fitBaselines(prepared.baselines)
        }
        let todoCells = prepared.pending.map(\.plan).filter { !prepared.completed.contains($0.hash) }

        let stamp = StudyExecutor.submissionStamp()
        let dir = shardRoot.appendingPathComponent(stamp)
        let objects = Executor.objectsDirectory(forStore: mainStore).standardizedFileURL.path
        var scripts: [(name: String, text: String)] = []
        var jobs: [(stage: String, id: String)] = []
        if !slurm.dryRun {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("logs"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: objects, withIntermediateDirectories: true)
        }
        let q = StudyExecutor.shellQuoted

        /// One stage's task configs and array scripts (split at MaxArraySize); returns the
        /// job ids submitted (or placeholders in a dry run).
        func submitStage(_ stage: String, _ plans: [PlannedRun], after dependency: String?) throws -> [String] {
            guard !plans.isEmpty else { return [] }
            let stageDir = dir.appendingPathComponent(stage)
            if !slurm.dryRun {
                try FileManager.default.createDirectory(at: stageDir, withIntermediateDirectories: true)
                for (i, plan) in plans.enumerated() {
                    try plan.runnableConfigJSON().write(to: stageDir.appendingPathComponent("cell-\(i).json"), atomically: true, encoding: .utf8)
                    try (plan.hash + "\n").write(to: stageDir.appendingPathComponent("cell-\(i).hash"), atomically: true, encoding: .utf8)
                }
            }
            let memory = slurm.memoryMiB ?? plans.map { StudyExecutor.taskMemoryMiB($0.config) }.max()!
            var ids: [String] = []
            let chunk = max(1, slurm.maxArraySize - 1)
            for (part, offset) in stride(from: 0, to: plans.count, by: chunk).enumerated() {
                let count = min(chunk, plans.count - offset)
                let name = "\(stage)\(plans.count > chunk ? "-\(part + 1)" : "").sbatch"
                var lines = header(job: "\(stage)", memoryMiB: memory, dependency: dependency)
                lines += ["#SBATCH --array=0-\(count - 1)",
                          "#SBATCH --output=\(dir.path)/logs/\(stage)-%A_%a.out", "",
                          "set -eu",
                          "I=$((SLURM_ARRAY_TASK_ID + \(offset)))",
                          "T=\(q(stageDir.path))/task-$I",
                          "mkdir -p \"$T\"",
                          "ln -sfn \(q(objects)) \"$T/objects\"",
                          "H=$(cat \(q(stageDir.path))/cell-$I.hash)",
                          "# The run's lineage (its parent; its own checkpoints when it resumes) from the store.",
                          "\(q(slurm.executable)) merge \(q(mainStore)) --store \"$T/moerec.sqlite\" --lineage \"$H\" > /dev/null",
                          "exec \(q(slurm.executable)) run \(q(stageDir.path))/cell-$I.json --store \"$T/moerec.sqlite\" --threads \(executor.threads)"]
                let text = lines.joined(separator: "\n") + "\n"
                scripts.append((name, text))
                ids.append(try submitScript(name, text))
            }
            return ids
        }

        func header(job: String, memoryMiB: Int, dependency: String?, cpus: Int? = nil) -> [String] {
            var lines = ["#!/bin/bash", "#SBATCH --job-name=moerec-\(study.name.replacingOccurrences(of: "/", with: "-"))-\(job)",
                         "#SBATCH --cpus-per-task=\(cpus ?? executor.threads)", "#SBATCH --mem=\(memoryMiB)M"]
            if let p = slurm.partition { lines.append("#SBATCH --partition=\(p)") }
            if let t = slurm.timeLimit { lines.append("#SBATCH --time=\(t)") }
            if let a = slurm.account { lines.append("#SBATCH --account=\(a)") }
            if let qos = slurm.qos { lines.append("#SBATCH --qos=\(qos)") }
            if let dependency { lines.append("#SBATCH --dependency=\(dependency)") }
            lines += slurm.extraLines.map { "#SBATCH \($0)" }
            return lines
        }

        func mergeScript(_ name: String, stage: String, after dependency: String, report: Bool) throws -> String {
            var lines = header(job: "merge-\(stage)", memoryMiB: 1024, dependency: dependency, cpus: 1)
            lines += ["#SBATCH --output=\(dir.path)/logs/\(name)-%j.out", "",
                      "set -eu", "shopt -s nullglob",
                      "shards=(\(q(dir.appendingPathComponent(stage).path))/task-*/moerec.sqlite)",
                      "if [ ${#shards[@]} -gt 0 ]; then \(q(slurm.executable)) merge \"${shards[@]}\" --store \(q(mainStore)); fi"]
            if report {
                let filter = StudyExecutor.sweepFilter(prepared.sweepIds)
                for table in study.tables {
                    lines.append("\(q(slurm.executable)) report --table \(table) --format md --where \(q(filter)) --store \(q(mainStore)) > \(q(dir.path))/report-\(table).md")
                }
            }
            let text = lines.joined(separator: "\n") + "\n"
            scripts.append(("\(name).sbatch", text))
            return try submitScript("\(name).sbatch", text)
        }

        func submitScript(_ name: String, _ text: String) throws -> String {
            if slurm.dryRun { return "<\(name.replacingOccurrences(of: ".sbatch", with: ""))>" }
            let file = dir.appendingPathComponent(name)
            try text.write(to: file, atomically: true, encoding: .utf8)
            let id = try StudyExecutor.sbatch(slurm.sbatch, file.path)
            log("submitted \(name): job \(id)")
            return id
        }

        let stage1 = try submitStage("stage1", todoParents, after: nil)
        jobs += stage1.map { ("stage1", $0) }
        var cellDependency: String?
        if !stage1.isEmpty {
            let merge1 = try mergeScript("merge1", stage: "stage1", after: "afterany:" + stage1.joined(separator: ":"), report: false)
            jobs.append(("merge1", merge1))
            cellDependency = "afterok:\(merge1)"
        }
        let stage2 = try submitStage("stage2", todoCells, after: cellDependency)
        jobs += stage2.map { ("stage2", $0) }
        if !stage2.isEmpty || !stage1.isEmpty {
            let after = stage2.isEmpty ? jobs.last!.id : stage2.joined(separator: ":")
            jobs.append(("finish", try mergeScript("finish", stage: "stage2", after: "afterany:" + after, report: true)))
        }
        if !slurm.dryRun && !jobs.isEmpty {
            try (jobs.map(\.id).joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("jobs"), atomically: true, encoding: .utf8)
        }
        return SlurmSubmission(directory: dir.path, parents: todoParents.count, cells: todoCells.count, jobs: jobs,
                               scripts: scripts, sweepIds: prepared.sweepIds)
    }

    /// Exit 2 while jobs of an earlier submission (listed in its `jobs` file) are still
    /// queued or running: merging their shards now would take running runs as interrupted
    /// and submit them a second time.
    static func checkNothingPending(_ shardRoot: URL, squeue: String) throws {
        guard let submissions = try? FileManager.default.contentsOfDirectory(atPath: shardRoot.path) else { return }
        var ids: [String] = []
        for submission in submissions {
            let file = shardRoot.appendingPathComponent(submission).appendingPathComponent("jobs")
            guard let text = try? String(contentsOf: file, encoding: .utf8) else { continue }
            ids += text.split(separator: "\n").map(String.init).filter { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
        }
        guard !ids.isEmpty else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [squeue, "-h", "-o", "%i", "-j", ids.joined(separator: ",")]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let listed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // squeue exits non-zero when none of the jobs is known any more (finished and purged).
        let pending = listed.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard pending.isEmpty else {
            throw InputError("--launcher slurm: \(pending.count) jobs of an earlier submission are still queued or running (\(pending.prefix(5).joined(separator: ", "))\(pending.count > 5 ? ", …" : "")); wait for them, or scancel them, then run the command again (nothing was submitted)")
        }
    }

    /// Folds the shard stores of earlier submissions into the store (what their tasks
    /// finished, or got to), so that only what is not completed is submitted again.
    func mergeEarlierShards(_ shardRoot: URL) throws {
        guard let submissions = try? FileManager.default.contentsOfDirectory(atPath: shardRoot.path) else { return }
        var stores: [String] = []
        for submission in submissions.sorted() {
            for stage in ["stage1", "stage2"] {
                let stageDir = shardRoot.appendingPathComponent(submission).appendingPathComponent(stage)
                guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: stageDir.path) else { continue }
                for task in tasks.sorted() where task.hasPrefix("task-") {
                    let path = stageDir.appendingPathComponent(task).appendingPathComponent("moerec.sqlite").path
                    if FileManager.default.fileExists(atPath: path) { stores.append(path) }
                }
            }
        }
        guard !stores.isEmpty else { return }
        let outcomes = try StoreMerger.merge(stores, into: executor.store)
        let added = outcomes.reduce(0) { $0 + $1.summary.runsAdded + $1.summary.runsReplaced }
        if added > 0 { log("merged \(added) runs from \(stores.count) shard stores of earlier submissions") }
    }

    /// Exit 2 before anything is written: no sbatch, or a shard directory (shards/ next to
    /// the store) that cannot be created or written.
    public static func checkSlurmSetUp(sbatch: String, storePath: String) throws {
        let found = sbatch.contains("/") ? FileManager.default.isExecutableFile(atPath: sbatch)
            : (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
                FileManager.default.isExecutableFile(atPath: "\($0)/\(sbatch)")
            }
        guard found else { throw InputError("--launcher slurm: no `\(sbatch)` on the PATH; run on a Slurm login node (nothing was submitted)") }
        let shardRoot = URL(fileURLWithPath: storePath).standardizedFileURL.deletingLastPathComponent().appendingPathComponent("shards")
        // The shard directory, or the nearest existing directory above it, must be a writable directory.
        var existing = shardRoot
        while !FileManager.default.fileExists(atPath: existing.path) && existing.path != "/" { existing.deleteLastPathComponent() }
        let isDirectory = FileManager.default.isDirectory(existing.path)
        guard isDirectory, access(existing.path, W_OK | X_OK) == 0 else {
            throw InputError("--launcher slurm: the shard directory \(shardRoot.path) cannot be created or written (\(existing.path) is \(isDirectory ? "not writable" : "not a directory")); nothing was submitted")
        }
    }

    /// Exit 2 when a run needs more than `memoryMiB` (what `--mem` asks for each task).
    public static func checkMemory(_ configs: [RunConfig], memoryMiB: Int) throws {
        for config in configs {
            let needed = taskMemoryMiB(config)
            if memoryMiB < needed {
                throw InputError("--mem \(memoryMiB): a \(config.kind.rawValue) run of this study (d_model=\(config.dModel), experts=\(config.experts), batch_size=\(config.batchSize)) needs about \(needed) MiB (parameters, optimizer state, activations and 512 MiB for the process); nothing was submitted")
            }
        }
    }

    /// The configs of a checked study's valid cells and parents with the architecture a
    /// cell inherits from its parent config: what `checkMemory` needs before any store exists.
    public static func configs(of checked: Checked) -> [RunConfig] {
        var configs: [RunConfig] = []
        for cell in checked.valid {
            var config = cell.config
            if let parent = cell.parent {
                config.model = parent.model
                configs.append(parent)
            }
            configs.append(config)
        }
        return configs
    }

    /// Submits a script and returns its job id (`sbatch --parsable`).
    static func sbatch(_ command: String, _ script: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [command, "--parsable", script]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CheckFailed("sbatch \(script) exited \(process.terminationStatus): \(errors.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        // `--parsable` prints "JOBID" or "JOBID;CLUSTER".
        let id = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
        guard !id.isEmpty, id.allSatisfy(\.isNumber) else { throw CheckFailed("sbatch \(script) printed no job id: \(output)") }
        return id
    }

    static func submissionStamp() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss"
        return "\(formatter.string(from: Date()))-\(getpid())"
    }

    static func shellQuoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
