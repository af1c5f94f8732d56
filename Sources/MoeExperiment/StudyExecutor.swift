import Foundation
import MoeJSON
import MoeModel
import MoeStore
import MoeTrain

/// Executes a study against one store, the same way whatever runs its cells: every cell is
/// checked before anything is written; the distinct pretraining parents are planned
/// (stage 1); then the cells are planned (inheriting their parent's architecture),
/// registered with the baselines of the data they fine-tune on as one sweep per part, the
/// baselines fitted, and the cells not yet completed handed to a launcher (stage 2). The
/// parents train before the cells are planned, or, several with a parallel launcher, in
/// the launcher's schedule ahead of the cells, each cell waiting only for its own parent.
/// A launcher only decides where a planned, registered run trains.
public final class StudyExecutor {
    public let study: Study
    public let executor: Executor
    public let tags: [String]
    public var log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    /// Wall time of each planning phase, in order (what `moerec bench plan` prints).
    public private(set) var phases: [(name: String, seconds: Double)] = []
    private var clock = Date()

    /// Ends the current planning phase.
    private func lap(_ name: String) {
        let now = Date()
        phases.append((name, now.timeIntervalSince(clock)))
        clock = now
    }

    /// A study's cells with, for each, the reason it was rejected (nil: valid).
    public struct Checked {
        public let cells: [Study.Cell]
        public let reasons: [String?]
        /// The study base's resolved config, which the cells' `baseChanges` change.
        let base: RunConfig?
        /// The rejected cells' reasons by label.
        public var invalid: [String: String] {
            var byLabel: [String: String] = [:]
            for (cell, reason) in zip(cells, reasons) { if let reason { byLabel[cell.label] = reason } }
            return byLabel
        }
        /// The valid cells, in order.
        public var valid: [Study.Cell] { zip(cells, reasons).compactMap { $1 == nil ? $0 : nil } }
    }

    /// Stage 2, planned and registered: the cells in order (each once), the sweeps they
    /// were registered in, and the runs among them already completed.
    public struct Prepared {
        /// Pretraining parents left to train with the cells (`ScheduledRun.after` names
        /// them); empty when they were trained before the cells were planned.
        public var parents: [ScheduledRun] = []
        public let pending: [(label: String, plan: PlannedRun)]
        public let sweepIds: [Int64]
        public let completed: Set<String>
        public let skipped: Int
        public let baselines: [RunConfig]
    }

    public struct Outcome {
        public let sweepIds: [Int64]
        public let cells: Int
        public let skipped: Int
        public let failed: Int
    }

    public init(study: Study, executor: Executor, tags: [String] = []) {
        self.study = study; self.executor = executor; self.tags = tags
        log = executor.log
    }

    /// Every cell, each validated without the store or data (a grid that cannot be built is
    /// thrown; a cell that cannot run is listed as invalid). A study with no valid cell is
    /// bad input. Planning a large grid takes seconds: `stop` ends it between cells.
    public static func check(_ study: Study, stop: StopFlag) throws -> Checked {
        try check(study, stop: stop, templates: true)
    }

    /// `check`; without `templates` every cell is resolved and planned the long way.
    package static func check(_ study: Study, stop: StopFlag, templates: Bool) throws -> Checked {
        let (cells, base) = try study.resolveCells(stop: stop, templates: templates)
        // Each distinct parent once (a bad parent is the study's error, not a cell's).
        var checkedParents: [RunConfig] = []
        for parent in cells.compactMap(\.parent) where !checkedParents.contains(parent) {
            try Executor.precheck(parent, parent: nil)
            checkedParents.append(parent)
        }
        // A pretraining cell is its config alone, and cells mostly share their model: each
        // distinct model's own checks (its parameter layout) run once.
        func pretraining(_ cell: Study.Cell) -> ModelConfig? {
            cell.parent == nil && !cell.config.isFinetune ? cell.config.model(classes: 0) : nil
        }
        var models: [ModelConfig] = [], modelIndex: [ModelConfig: Int] = [:]
        for model in cells.lazy.compactMap(pretraining) where modelIndex[model] == nil {
            modelIndex[model] = models.count
            models.append(model)
        }
        let modelReasons = try parallelMap(models.count, stop: stop) { i -> String? in
            do { try models[i].validate() } catch { return "\(error)" }
            return nil
        }
        let reasons = try parallelMap(cells.count, stop: stop) { i -> String? in
            let cell = cells[i]
            do {
                if let model = pretraining(cell), let m = modelIndex[model] {
                    if let reason = modelReasons[m] { return reason }
                    try cell.config.validate(modelValidated: true)
                } else {
                    try Executor.precheck(cell.config, parent: cell.parent, explicit: cell.explicit)
                }
            } catch {
                return "\(error)"
            }
            return nil
        }
        if !cells.isEmpty, reasons.allSatisfy({ $0 != nil }), let first = reasons.first! {
            throw InputError("no valid cell in the sweep (all \(cells.count) rejected); first: \(first)")
        }
        return Checked(cells: cells, reasons: reasons, base: base)
    }

    /// What `--dry-run` prints: each valid cell's plans (its parent's first), labelled with
    /// the cell; invalid cells are logged. Nothing is trained or written; `store` nil stands
    /// for a store that does not exist yet.
    public static func preview(_ checked: Checked, store: Store?, stop: StopFlag,
                               log: (String) -> Void) throws -> [(label: String?, plan: PlannedRun)] {
        let data = DataProvider()
        var plans: [(String?, PlannedRun)] = []
        for (cell, reason) in zip(checked.cells, checked.reasons) {
            try stop.check()
            if let reason {
                log("invalid [\(cell.label)]: \(reason)")
                continue
            }
            let cellPlans = try Executor.preview(cell.config, explicit: cell.explicit, parent: cell.parent, store: store, data: data)
            plans += cellPlans.dropLast().map { (nil, $0) } + [(cell.label, cellPlans.last!)]
        }
        return plans
    }

    /// Prepares the study (see `prepare`) and trains what is not completed with `launcher`.
    public func run(_ checked: Checked, launcher: StudyLauncher) throws -> Outcome {
        let prepared = try prepare(checked, launcher: launcher)
        try fitBaselines(prepared.baselines)
        let training = Set(prepared.parents.map(\.plan.hash))
        let cells = prepared.pending.map { cell in
            ScheduledRun(label: cell.label, plan: cell.plan, after: cell.plan.config.parent.flatMap { training.contains($0) ? $0 : nil })
        }
        let failed = try launcher.run(prepared.parents + cells, completed: prepared.completed, executor: executor, log: log)
        log("study \(study.name): \(prepared.pending.count) cells run or cached, \(prepared.skipped) skipped, \(failed) failed")
        return Outcome(sweepIds: prepared.sweepIds, cells: prepared.pending.count, skipped: prepared.skipped, failed: failed)
    }

    /// Stage 1 (the parents) and the planning and registration of stage 2. One parent
    /// alone, or any parents with a launcher of one, train here first, in this process with
    /// all its threads. Several parents with a parallel launcher are left to it
    /// (`Prepared.parents`), scheduled before the cells: a cell starts as soon as its own
    /// parent is trained, so no core waits for the last parent while cells are ready. With
    /// `launcher` nil, parents that are not completed are an error (planning only).
    public func prepare(_ checked: Checked, launcher: StudyLauncher?) throws -> Prepared {
        phases = []
        clock = Date()
        log("study \(study.name): \(checked.cells.count) cells")
        let parents = try planParents(checked)
        let scheduled = try trainParents(parents.plans, launcher: launcher)
        lap("parents")
        var prepared = try register(try planCells(checked, parents: parents))
        prepared.parents = scheduled
        return prepared
    }

    /// The distinct pretraining parents of a study's valid cells, planned (not trained).
    package struct Parents {
        var plans: [PlannedRun]
        /// For each of `checked.cells`, the index of its parent in `plans` (nil: none, or
        /// the cell is invalid).
        var ofCell: [Int?]
    }

    package func planParents(_ checked: Checked) throws -> Parents {
        var configs: [RunConfig] = [], plans: [PlannedRun] = []
        var ofCell: [Int?] = []
        for (cell, reason) in zip(checked.cells, checked.reasons) {
            guard reason == nil, let parent = cell.parent else {
                ofCell.append(nil)
                continue
            }
            if let known = configs.firstIndex(of: parent) {
                ofCell.append(known)
                continue
            }
            plans.append(try executor.plan(parent))
            configs.append(parent)
            ofCell.append(plans.count - 1)
            try executor.stop.check()
        }
        return Parents(plans: plans, ofCell: ofCell)
    }

    /// Fits and stores the baselines of each distinct data set (cache hits when stored).
    func fitBaselines(_ configs: [RunConfig]) throws {
        var done = Set<String>()
        for config in configs where done.insert(StudyExecutor.baselineData(config)).inserted {
            _ = try executor.executeBaselines(of: config)
            try executor.stop.check()
        }
    }

    /// Stage 2 planned, nothing written: each valid cell in order, the parts' members
    /// (parents, cells, baselines) and the data the baselines are fitted on.
    package struct CellPlans {
        package var pending: [(label: String, plan: PlannedRun)]
        package var members: [[(run: NewRun, tags: [String])]]
        package var skipped: Int
        /// How many cells were planned from the base's templates (the others the long way).
        package var templated: Int
        var baselines: [RunConfig]
    }

    /// Stage 2 planned with the parents' plans (trained or not): every valid cell's plan
    /// (in parallel) and its baselines. Nothing is written.
    package func planCells(_ checked: Checked, parents: Parents) throws -> CellPlans {
        let cells = checked.cells, reasons = checked.reasons
        // Each part's runs in order (each parent before its first cell), registered at once
        // as the part's sweep; a run in two parts is a member of both and runs once.
        var members = [[(run: NewRun, tags: [String])]](repeating: [], count: study.parts.count)
        var memberHashes = [Set<String>](repeating: [], count: study.parts.count)
        func addMember(_ run: NewRun, part: Int, tags: [String]) {
            if memberHashes[part].insert(run.hash).inserted { members[part].append((run, tags)) }
        }
        var pending: [(label: String, plan: PlannedRun)] = []
        var pendingHashes = Set<String>()
        var skipped = 0, templated = 0
        var baselineConfigs: [(part: Int, config: RunConfig)] = [], baselineKeys = Set<String>()
        // Planning (config, data, hash) runs in parallel: every parent a cell names is
        // known by then, so no cell reads the store.
        var known: [String: Executor.KnownParent] = [:]
        for plan in parents.plans { known[plan.hash] = Executor.KnownParent(hash: plan.hash, value: try plan.value) }
        for ref in Set(cells.indices.compactMap { reasons[$0] == nil && cells[$0].parent == nil ? cells[$0].config.parent : nil }) {
            known[ref] = try Executor.storedParent(ref, store: executor.store)
        }
        let data = executor.data
        let templates = checked.base.flatMap { try? CellTemplates(base: $0, parents: known) }
        // The label too is written in parallel (a sweep's 100,000 of them add up).
        typealias Planned = (plan: PlannedRun, run: NewRun, templated: Bool, label: String)
        let plans = try parallelMap(cells.count, stop: executor.stop) { i -> Result<Planned, InputError>? in
            let cell = cells[i]
            guard reasons[i] == nil else { return nil }
            var config = cell.config, explicit = cell.explicit
            if let p = parents.ofCell[i] {
                config.parent = parents.plans[p].hash
                explicit.insert("parent")
            }
            if let changes = cell.baseChanges, let planned = templates?.plan(config, explicit: explicit, changes: changes, data: data) {
                return .success((planned.0, planned.1, true, cell.label))
            }
            do {
                let plan = try Executor.plan(config, explicit: explicit, known: known, data: data)
                return .success((plan, try Executor.newRun(plan), false, cell.label))
            } catch let error as InputError {
                return .failure(error)
            }
        }
        let parentRuns = try parents.plans.map(Executor.newRun)
        var partSizes = [Int](repeating: 0, count: study.parts.count)
        for cell in cells { partSizes[cell.part] += 1 }
        for part in partSizes.indices {
            members[part].reserveCapacity(partSizes[part])
            memberHashes[part].reserveCapacity(partSizes[part])
        }
        pending.reserveCapacity(cells.count)
        pendingHashes.reserveCapacity(cells.count)
        for i in cells.indices {
            let part = cells[i].part
            guard let planned = plans[i] else {
                skipped += 1
                log("skipped [\(cells[i].label)]: \(reasons[i] ?? "")")
                continue
            }
            switch planned {
            case let .failure(error):
                skipped += 1
                log("skipped [\(cells[i].label)]: \(error)")
            case let .success(planned):
                if planned.templated { templated += 1 }
                if let p = parents.ofCell[i] { addMember(parentRuns[p], part: part, tags: []) }
                addMember(planned.run, part: part, tags: tags)
                if pendingHashes.insert(planned.plan.hash).inserted { pending.append((planned.label, planned.plan)) }
                let config = planned.plan.config
                if config.isFinetune, baselineKeys.insert("\(part)\u{0}" + StudyExecutor.baselineData(config)).inserted {
                    baselineConfigs.append((part, config))
                }
            }
        }
        for (part, config) in baselineConfigs {
            for method in BaselineMethod.allCases {
                let plan = try Baselines.plan(method, of: config, data: executor.data)
                addMember(try NewRun(kind: .baseline, config: plan.value, parentHash: nil, datasetFingerprint: plan.fingerprint,
                                     numericsVersion: Baselines.numericsVersion), part: part, tags: tags)
            }
        }
        lap("plan")
        return CellPlans(pending: pending, members: members, skipped: skipped, templated: templated,
                         baselines: baselineConfigs.map(\.config))
    }

    /// The fast path of `planCells`: a checked cell's plan written from templates of the
    /// study base's canonical JSON (one for pretraining, one per parent), with the cell's
    /// changed members spliced in, and hashed once. It gives the plan `Executor.plan`
    /// gives (a test compares the two), or nil where only that call should plan the cell.
    struct CellTemplates {
        let base: [String: JSONValue]
        let pretraining: ConfigTemplate
        /// By the parent reference the cells give.
        let parents: [String: (parent: Executor.KnownParent, template: ConfigTemplate)]
        let architectureKeys = RunConfig.architectureKeys

        init(base config: RunConfig, parents known: [String: Executor.KnownParent]) throws {
            pretraining = try ConfigTemplate(config)
            base = pretraining.object
            var parents: [String: (Executor.KnownParent, ConfigTemplate)] = [:]
            for (ref, parent) in known {
                // The explicit keys are the cell's: each cell checks its own below.
                var object = try Executor.inheritArchitecture(config, from: parent.value, explicit: [])
                object["parent"] = .string(parent.hash)
                parents[ref] = (parent, try ConfigTemplate(object))
            }
            self.parents = parents
        }

        /// The plan of a cell that passed `StudyExecutor.check`, with `config` its config
        /// (its parent set) and `changes` its `baseChanges`.
        func plan(_ config: RunConfig, explicit: Set<String>, changes: [(key: String, value: JSONValue?)],
                  data: DataProvider) -> (PlannedRun, NewRun)? {
            do {
                var config = config
                let configJSON: String
                if !config.isFinetune {
                    // Validated by the check, as it is planned.
                    guard config.parent == nil else { return nil }
                    configJSON = try pretraining.configJSON(changes)
                } else {
                    guard let ref = config.parent, let (parent, template) = parents[ref] else { return nil }
                    // Architecture keys come from the parent; one given otherwise is the long way's error.
                    for key in architectureKeys where explicit.contains(key) {
                        guard let inherited = parent.value[key] else { continue }
                        if (changes.last { $0.key == key }?.value ?? base[key]) != inherited { return nil }
                    }
                    let members = changes.filter { !architectureKeys.contains($0.key) && $0.key != "parent" }
                    config = try template.config(members)
                    try config.validate()
                    configJSON = try template.configJSON(members)
                }
                let prepared = try data.prepare(config)
                let run = try Executor.newRun(config: config, configJSON: configJSON, prepared: prepared)
                return (PlannedRun(config: config, configJSON: configJSON, prepared: prepared, hash: run.hash), run)
            } catch {
                return nil
            }
        }
    }

    /// Registers each part as a sweep of its members and reads which runs are completed.
    func register(_ plans: CellPlans) throws -> Prepared {
        var sweepIds: [Int64] = []
        for (i, part) in study.parts.enumerated() where !plans.members[i].isEmpty {
            let spec = try JSONValue.object([
                "name": .string(study.sweepName(of: part)),
                "grid": .array(part.grid.map { .object(["key": .string($0.key), "values": .array($0.values)]) }),
            ]).canonicalString
            sweepIds.append(try executor.store.registerSweep(name: study.sweepName(of: part), specJSON: spec, runs: plans.members[i]))
        }
        lap("register")
        log("study \(study.name): \(plans.pending.count) cells registered, sweep id\(sweepIds.count == 1 ? "" : "s") \(sweepIds.map(String.init).joined(separator: ", "))")
        // What is already completed, read in one query (a sweep may have 100,000 cells).
        let completed = Set(try executor.store.runs(RunSelection(status: .completed, filter: try WhereFilter(
            runs: StudyExecutor.sweepFilter(sweepIds)))).map(\.hash))
        lap("completed")
        return Prepared(pending: plans.pending, sweepIds: sweepIds, completed: completed, skipped: plans.skipped,
                        baselines: plans.baselines)
    }

    /// The `--where` expression selecting the runs of the given sweeps.
    public static func sweepFilter(_ sweepIds: [Int64]) -> String {
        sweepIds.map { "sweep=\($0)" }.joined(separator: " or ")
    }

    /// What a baseline depends on: its data (the fields of `DataKeys.fineTuning`) and the
    /// seed of its linear classifier.
    static func baselineData(_ c: RunConfig) -> String {
        "\(c.task)\u{0}\(c.trainSize)\u{0}\(c.evalExamples)\u{0}\(c.testExamples)\u{0}\(c.context)\u{0}\(c.seed)"
    }

    /// Trains the parents not yet completed here, or returns them for `launcher` to
    /// schedule with the cells (see `prepare`).
    func trainParents(_ plans: [PlannedRun], launcher: StudyLauncher?) throws -> [ScheduledRun] {
        var todo: [ScheduledRun] = []
        for (i, plan) in plans.enumerated() where try executor.store.run(hash: plan.hash)?.status != .completed {
            todo.append(ScheduledRun(label: "parent \(i + 1)/\(plans.count)", plan: plan))
        }
        guard !todo.isEmpty else { return [] }
        guard let launcher else {
            throw InputError("\(todo.count) of the study's \(plans.count) pretraining parents are not completed (planning only)")
        }
        if launcher.parallelism > 1 && todo.count > 1 {
            log("study \(study.name): \(todo.count) of \(plans.count) pretraining parents to train, each parent's cells as soon as it is trained")
            return todo
        }
        log("study \(study.name): \(todo.count) of \(plans.count) pretraining parents to train")
        let threads = executor.threads
        executor.setThreads(threads * launcher.parallelism)
        defer { executor.setThreads(threads) }
        for run in todo {
            let result = try executor.execute(run.plan)
            try executor.stop.check()
            if result.outcome != .completed && result.outcome != .cacheHit {
                throw CheckFailed("parent pretraining \(run.plan.hash.prefix(12)) ended \(result.outcome)")
            }
        }
        return []
    }
}

/// A run a study's launcher trains: its label in progress lines, its plan and, for a cell
/// whose pretraining parent trains in the same schedule, that parent's hash: the cell
/// starts only after it completes, and is not run (counted failed) when it does not.
public struct ScheduledRun {
    public let label: String
    public let plan: PlannedRun
    public let after: String?

    public init(label: String, plan: PlannedRun, after: String? = nil) {
        self.label = label
        self.plan = plan
        self.after = after
    }

    /// Why this run cannot start (its parent did not complete), or nil.
    func blocked(by failed: Set<String>) -> String? {
        guard let after, failed.contains(after) else { return nil }
        return "not run: its pretraining parent \(after.prefix(12)) did not complete; run the study again to resume it"
    }
}

/// Where a study's registered runs train.
public protocol StudyLauncher {
    /// How many runs train at once.
    var parallelism: Int { get }
    /// Trains the runs not in `completed`, in order except that a run waits for the run it
    /// is `after`, and returns how many did not complete (runs whose parent failed
    /// included); a signal on `executor.stop` ends them all (marked interrupted) and
    /// throws `Interrupted`.
    func run(_ runs: [ScheduledRun], completed: Set<String>, executor: Executor,
             log: @escaping (String) -> Void) throws -> Int
}

/// Trains the runs one after another in this process.
public struct InProcessLauncher: StudyLauncher {
    public init() {}
    public var parallelism: Int { 1 }

    public func run(_ runs: [ScheduledRun], completed: Set<String>, executor: Executor,
                    log: @escaping (String) -> Void) throws -> Int {
        var progress = StudyProgress(runs: runs.map(\.plan).filter { !completed.contains($0.hash) }, log: log)
        var failed = Set<String>()
        for (i, cell) in runs.enumerated() {
            if let reason = cell.blocked(by: failed) {
                log("cell [\(cell.label)] \(reason)")
                failed.insert(cell.plan.hash)
                if !completed.contains(cell.plan.hash) {
                    progress.finished(cell.label, kind: cell.plan.config.kind, steps: cell.plan.config.steps, seconds: nil)
                }
                continue
            }
            log("[\(i + 1)/\(runs.count)] \(cell.label) \(cell.plan.hash.prefix(12))")
            let runStarted = Date()
            let result = try executor.execute(cell.plan)
            if result.outcome != .completed && result.outcome != .cacheHit { failed.insert(cell.plan.hash) }
            if result.outcome != .cacheHit {
                progress.finished(cell.label, kind: cell.plan.config.kind, steps: cell.plan.config.steps,
                                  seconds: Date().timeIntervalSince(runStarted))
            }
            try executor.stop.check()
        }
        return failed.count
    }
}

/// Trains each run as its own `moerec run CONFIG` process (`executable`), at most `jobs`
/// at a time, each with the executor's thread count; a run is fully described by its
/// resolved config, written to a temporary file. Children are told (MOEREC_SWEEP_CHILD=1)
/// to stop when this process dies.
public struct ProcessLauncher: StudyLauncher {
    public let executable: String
    public let jobs: Int
    public init(executable: String, jobs: Int) { self.executable = executable; self.jobs = jobs }
    public var parallelism: Int { jobs }

    public func run(_ runs: [ScheduledRun], completed: Set<String>, executor: Executor,
                    log: @escaping (String) -> Void) throws -> Int {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moerec-sweep-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let todo = runs.filter { !completed.contains($0.plan.hash) }
        if todo.count < runs.count { log("\(runs.count - todo.count) of \(runs.count) already completed (cache hits)") }
        var progress = StudyProgress(runs: todo.map(\.plan), log: log)
        var running: [(process: Process, run: ScheduledRun, started: Date)] = []
        // Indices into `todo` not started yet, in order; what finished, and how (each run's
        // hash once: the count of failures is the size of `failed`).
        var waiting = Array(todo.indices), succeeded = completed, failed = Set<String>()
        var started = 0
        func reap() {
            // Which processes ended, decided once (one may end while this runs).
            let ended = running.filter { !$0.process.isRunning }
            guard !ended.isEmpty else { return }
            running.removeAll { r in ended.contains { $0.process === r.process } }
            let stillRunning = running.map { (kind: $0.run.plan.config.kind, steps: $0.run.plan.config.steps) }
            let now = Date()
            for (process, run, runStarted) in ended {
                if process.terminationStatus != 0 {
                    failed.insert(run.plan.hash)
                    log("cell [\(run.label)] exited \(process.terminationStatus)")
                } else if let status = (try? executor.store.run(hash: run.plan.hash))??.status, status != .completed {
                    // The child ran its config file to the end, but not as the planned run.
                    failed.insert(run.plan.hash)
                    log("cell [\(run.label)] exited 0 but its run \(run.plan.hash.prefix(12)) is \(status.rawValue): the config file resolved to another run")
                } else {
                    succeeded.insert(run.plan.hash)
                }
                progress.finished(run.label, kind: run.plan.config.kind, steps: run.plan.config.steps,
                                  seconds: now.timeIntervalSince(runStarted), running: stillRunning)
            }
        }
        while !waiting.isEmpty || !running.isEmpty {
            reap()
            // Runs whose parent failed are not run; the others start in order, each as soon
            // as a slot is free and its parent (if it trains in this schedule) completed.
            waiting.removeAll { i in
                guard let reason = todo[i].blocked(by: failed) else { return false }
                log("cell [\(todo[i].label)] \(reason)")
                failed.insert(todo[i].plan.hash)
                progress.finished(todo[i].label, kind: todo[i].plan.config.kind, steps: todo[i].plan.config.steps, seconds: nil)
                return true
            }
            while running.count < jobs, let k = waiting.firstIndex(where: { todo[$0].after.map(succeeded.contains) ?? true }) {
                let run = todo[waiting.remove(at: k)]
                let file = dir.appendingPathComponent("cell-\(started).json")
                try run.plan.runnableConfigJSON().write(to: file, atomically: true, encoding: .utf8)
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = ["run", file.path, "--store", executor.store.path, "--threads", String(executor.threads)]
                var environment = ProcessInfo.processInfo.environment
                environment["MOEREC_SWEEP_CHILD"] = "1"
                process.environment = environment
                try process.run()
                started += 1
                log("[\(started)/\(todo.count)] \(run.label) \(run.plan.hash.prefix(12)) pid \(process.processIdentifier)")
                running.append((process, run, Date()))
            }
            if running.isEmpty && !waiting.isEmpty {
                // Cannot happen (a run waits only for a parent scheduled before it), but a
                // schedule that cannot advance must end, not spin.
                for i in waiting {
                    log("cell [\(todo[i].label)] not run: its parent \(todo[i].after?.prefix(12) ?? "") was not scheduled")
                    failed.insert(todo[i].plan.hash)
                }
                waiting = []
            }
            if let signal = executor.stop.signal {
                // Each run gets the signal the study got, marks itself interrupted and exits.
                for run in running { kill(run.process.processIdentifier, signal) }
                for run in running { run.process.waitUntilExit() }
                throw Interrupted(signal: signal)
            }
            usleep(200_000)
        }
        return failed.count
    }
}

/// A study stage's progress: after each run, how many are finished and an ETA from the
/// work done so far against the wall time since the stage began: the finished runs'
/// planned steps, and half the planned steps of the runs still running in other processes
/// (on average half done, where runs start as slots free up; without them, the first runs
/// of `--jobs 2` to finish would count half the work done and double the ETA). Steps are
/// weighed by their kind's pace, the seconds per step its finished runs took (a
/// fine-tuning step, evaluations included, costs more than a pretraining step: counted
/// alike, the fine-tuning left after the parents looked cheaper than it is); a kind
/// with no finished run yet is paced like the runs finished so far. A run stopped early
/// by patience counts its planned steps, so the ETA errs long; evaluations and
/// checkpoints are in the wall time, so they do not make it swing. A run not run (its
/// parent failed) leaves the work to do.
public struct StudyProgress {
    public typealias Kind = RunSettings.Kind
    let total: Int
    package private(set) var totalSteps: [Kind: Int] = [:]
    var doneCells = 0
    /// The planned steps and the seconds of the runs finished so far, by kind.
    var doneSteps: [Kind: Int] = [:], doneSeconds: [Kind: Double] = [:]
    let started = Date()
    let log: (String) -> Void

    public init(runs: [PlannedRun], log: @escaping (String) -> Void) {
        self.init(runs: runs.map { ($0.config.kind, $0.config.steps) }, log: log)
    }

    /// The runs to do as their kind and planned steps.
    package init(runs: [(kind: Kind, steps: Int)], log: @escaping (String) -> Void) {
        total = runs.count
        for run in runs { totalSteps[run.kind, default: 0] += run.steps }
        self.log = log
    }

    /// A run ended after `seconds` of its own (nil: it was not run, and its steps leave the
    /// work to do); `running`: the kind and planned steps of the runs still running besides it.
    public mutating func finished(_ label: String, kind: Kind, steps: Int, seconds: Double?,
                                  running: [(kind: Kind, steps: Int)] = []) {
        doneCells += 1
        if let seconds {
            doneSteps[kind, default: 0] += steps
            doneSeconds[kind, default: 0] += seconds
        } else {
            totalSteps[kind, default: 0] -= steps
        }
        let elapsed = Date().timeIntervalSince(started)
        var line = "done [\(label)]: \(doneCells)/\(total) finished, elapsed \(StudyProgress.duration(elapsed))"
        var runningSteps: [Kind: Int] = [:]
        for r in running { runningSteps[r.kind, default: 0] += r.steps }
        if doneCells < total, let eta = StudyProgress.remaining(elapsed: elapsed, totalSteps: totalSteps, doneSteps: doneSteps,
                                                                runningSteps: runningSteps, pace: pace()) {
            line += ", ETA " + StudyProgress.duration(eta)
        }
        log(line)
    }

    /// Seconds per step of each kind with a finished run, the others at the pace of all
    /// finished runs; empty before any run has finished.
    package func pace() -> [Kind: Double] {
        let steps = doneSteps.values.reduce(0, +), seconds = doneSeconds.values.reduce(0, +)
        guard steps > 0, seconds > 0 else { return [:] }
        var pace: [Kind: Double] = [:]
        for kind in Kind.allCases {
            if let own = doneSteps[kind], own > 0, let spent = doneSeconds[kind], spent > 0 {
                pace[kind] = spent / Double(own)
            } else {
                pace[kind] = seconds / Double(steps)
            }
        }
        return pace
    }

    /// Seconds left at the rate so far, the running runs counted half done and each kind's
    /// steps weighed by `pace` (equal weights when it is empty); nil before any work is done.
    public static func remaining(elapsed: Double, totalSteps: [Kind: Int], doneSteps: [Kind: Int], runningSteps: [Kind: Int],
                                 pace: [Kind: Double] = [:]) -> Double? {
        func weight(_ kind: Kind) -> Double { pace[kind] ?? 1 }
        var done = 0.0, all = 0.0
        for kind in Kind.allCases {
            done += (Double(doneSteps[kind] ?? 0) + Double(runningSteps[kind] ?? 0) / 2) * weight(kind)
            all += Double(totalSteps[kind] ?? 0) * weight(kind)
        }
        guard done > 0 else { return nil }
        return elapsed * max(0, all - done) / done
    }

    /// m:ss, or h:mm:ss from an hour.
    public static func duration(_ s: Double) -> String {
        let t = Int(max(0, s.rounded()))
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}
