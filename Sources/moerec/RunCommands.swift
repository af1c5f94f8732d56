import ArgumentParser
import Foundation
import MoeExperiment
import MoeJSON
import MoeMetricNames
import MoeReport
import MoeStore
import MoeTrain

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one config (or a preset study); a completed hash is a cache hit.",
        discussion: """
        CONFIG is a JSON or YAML file of run-config keys; --set overrides single keys with type \
        checking; every other key keeps its default (see README for the list). A fine-tuning \
        config names its parent by hash (any unique prefix) or by the parent's config file, \
        which is run first when missing. An interrupted run with the same hash resumes from \
        its last checkpoint and ends bit-identical to an uninterrupted one.

        --preset quick runs a complete small regime study on WordNet (pretrain one small MoE, \
        fine-tune it on wn-supersense under the five ST-MoE regimes) and prints the regimes \
        table; --preset paper runs the scaled-down ST-MoE protocol (see `moerec sweep`).

        Examples:
          moerec run --preset quick
          moerec run pretrain.yaml --set steps=500 --set experts=4
          moerec run --set kind=finetune --set parent=3fa2c1 --set regime=moe
          moerec run finetune.yaml --dry-run
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Config file (JSON or YAML).") var config: String?
    @Option(name: .customLong("set"), help: "Override one key: --set key=value (repeatable).") var sets: [String] = []
    @Option(help: "Run a preset study (quick, paper) instead of one config.") var preset: String?
    @Option(help: "Tag the run (repeatable).") var tag: [String] = []
    @Option(help: "Parallel processes for a preset study.") var jobs = 1
    @Flag(help: "Print each resolved config's hash, its parent's, and whether it is completed, interrupted or new; train and write nothing.")
    var dryRun = false

    func validate() throws {
        if preset != nil && (config != nil || !sets.isEmpty) {
            throw ValidationError("--preset runs a whole study; use `moerec sweep --preset NAME --set …` to change its keys")
        }
        if let preset, !Presets.names.contains(preset) {
            throw ValidationError("--preset \(preset): unknown preset (valid: \(Presets.names.joined(separator: ", ")))")
        }
        guard jobs >= 1 && jobs <= 16 else { throw ValidationError("--jobs \(jobs): must be in 1...16") }
        // Before anything trains: a tag refused after the run would leave it untagged.
        for t in tag {
            do { try Store.validateTag(t) } catch { throw ValidationError("--tag: \(error)") }
        }
    }

    func run() throws {
        if let preset {
            let study = try Presets.study(named: preset)
            try StudyRunner(global: global, study: study, jobs: jobs, tags: tag).run(dryRun: dryRun)
            return
        }
        let (resolved, explicit) = try ConfigResolver.resolve(file: config, sets: sets)
        if dryRun {
            let store = try global.existingStore()
            let plans = try Executor.preview(resolved, explicit: explicit, store: store, data: DataProvider())
            try DryRun.print(plans.map { (nil, $0) }, store: store)
            return
        }
        try Executor.precheck(resolved, parent: nil, explicit: explicit)
        // Everything checkable without training (data, parent) is checked before the store
        // is created or written.
        let data = DataProvider()
        let existing = try global.existingStore()
        _ = try Executor.preview(resolved, explicit: explicit, store: existing, data: data)
        existing?.close()
        ParentWatch.startIfChild()
        let store = try global.openStore()
        let executor = try global.executor(store: store, data: data)
        let plan = try executor.plan(resolved, explicit: explicit)
        let result = try executor.execute(plan)
        for t in tag { try store.addTag(runHash: plan.hash, tag: t) }
        try RunSummaryPrinter.print(result: result, store: store, majority: plan.prepared.majorityAccuracy)
        if case .failed = result.outcome { throw ExitCode(1) }
        if case .interrupted = result.outcome { throw Interrupted(signal: executor.stop.signal ?? SIGINT) }
    }
}

/// A cell started by `sweep --jobs N` stops (and is marked interrupted) when its sweep
/// process dies, instead of training on unattended.
enum ParentWatch {
    static func startIfChild() {
        guard ProcessInfo.processInfo.environment["MOEREC_SWEEP_CHILD"] == "1" else { return }
        let parent = getppid()
        Thread.detachNewThread {
            while getppid() == parent { sleep(1) }
            Signals.flag?.raise(signal: SIGTERM)
        }
    }
}

enum RunSummaryPrinter {
    static func print(result: RunResult, store: Store, majority: Double?) throws {
        let short = String(result.hash.prefix(12))
        switch result.outcome {
        case .cacheHit: Swift.print("\(result.hash)  cache hit (already completed; not retrained)")
        case .completed:
            Swift.print("\(result.hash)  completed" + (result.resumedFrom.map { " (resumed from step \($0))" } ?? ""))
        case let .failed(step, reason): Swift.print("\(result.hash)  failed at step \(step): \(reason)")
        case let .interrupted(step): Swift.print("\(result.hash)  interrupted after step \(step); run the same command to resume")
        }
        for split in Split.evaluation {
            let loss = try store.metrics(runHash: result.hash, name: MetricName.loss, split: split).last
            let acc = try store.metrics(runHash: result.hash, name: MetricName.accuracy, split: split).last
            if let loss, let acc {
                Swift.print(String(format: "  %@ %-5@ step %d  loss %.4f  acc %.4f", short, split, loss.step, loss.value, acc.value))
            }
        }
        if let majority { Swift.print(String(format: "  majority-class accuracy on validation: %.4f", majority)) }
    }
}

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the cross product of --grid values over a config; resumable, completed cells are skipped.",
        discussion: """
        Cells that share a pretraining parent share one pretraining run (architecture keys in the \
        grid, such as experts, apply to the parent when it is given as a config file). A cell \
        whose config is invalid for its architecture (e.g. regime=moe with experts=1) is \
        reported and skipped. An axis parent.KEY sets KEY on the parent config alone (e.g. \
        parent.seed=0,1,2: three pretraining runs, each fine-tuned). The distinct parents are \
        trained first (--jobs of them at once), then the cells; the majority and linear \
        baselines of every task, train size and seed the cells fine-tune on are fitted and \
        stored with them (seconds each). Interrupt at any time; the same command resumes: \
        completed cells are cache hits and an interrupted cell resumes from its checkpoint.

        Examples:
          moerec sweep finetune.yaml --grid regime=all,moe,ffn --grid seed=0,1,2
          moerec sweep finetune.yaml --grid parent.seed=0,1,2 --grid experts=1,8
          moerec sweep --preset paper --jobs 2
          moerec sweep --preset paper --dry-run
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Base config file (JSON or YAML); `parent` may be a pretraining config file.") var config: String?
    @Option(name: .customLong("set"), help: "Override one base key: --set key=value (repeatable).") var sets: [String] = []
    @Option(help: "A grid axis: key=v1,v2,… or parent.key=v1,v2,… for the parent config (repeatable).") var grid: [String] = []
    @Option(help: "Start from a preset study (quick, paper); --grid replaces its axes of the same key.") var preset: String?
    @Option(help: "Cells run in parallel processes (each with --threads worker threads).") var jobs = 1
    @Option(help: "Sweep name recorded in the store.") var name: String?
    @Option(help: "Report tables to print at the end (regimes, experts, overfit, claims).") var table: [String] = []
    @Flag(help: "Print every cell's hash, its parent's, and whether it is completed, interrupted or new; train and write nothing.")
    var dryRun = false

    func validate() throws {
        guard jobs >= 1 && jobs <= 16 else { throw ValidationError("--jobs \(jobs): must be in 1...16") }
        if preset == nil && grid.isEmpty { throw ValidationError("give at least one --grid key=v1,v2 (or --preset)") }
        if let preset, !Presets.names.contains(preset) {
            throw ValidationError("--preset \(preset): unknown preset (valid: \(Presets.names.joined(separator: ", ")))")
        }
    }

    func run() throws {
        var study: Study
        if let preset {
            study = try Presets.study(named: preset)
        } else {
            var base = try config.map { try ConfigResolver.load(file: $0) } ?? [:]
            var parent: [String: JSONValue]? = nil
            if case let .string(p)? = base["parent"], ConfigResolver.isConfigPath(p) {
                parent = try ConfigResolver.load(file: p)
                base["parent"] = nil
            }
            study = Study(name: name ?? "sweep", base: base, parent: parent, grid: [], tables: [])
        }
        for item in sets {
            guard let eq = item.firstIndex(of: "=") else { throw InputError("--set \(item): expected key=value") }
            let key = String(item[..<eq])
            let (_, value) = try ConfigResolver.parseOverride(item)
            study.base[key] = value
        }
        // Axes given here replace a preset's axes of the same key; one given twice here
        // stays twice, for `Study.cells` to refuse.
        var axes: [(key: String, values: [JSONValue])] = []
        for axis in grid {
            guard let eq = axis.firstIndex(of: "=") else { throw InputError("--grid \(axis): expected key=v1,v2,…") }
            let key = String(axis[..<eq])
            let texts = axis[axis.index(after: eq)...].split(separator: ",", omittingEmptySubsequences: false)
            let values = try texts.map { text -> JSONValue in
                guard !text.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw InputError("--grid \(axis): empty value (expected key=v1,v2,…)")
                }
                // `parent.KEY` values are typed as KEY.
                let typedAs = key.hasPrefix("parent.") ? String(key.dropFirst("parent.".count)) : key
                return try ConfigResolver.parseOverride("\(typedAs)=\(text)").1
            }
            axes.append((key, values))
        }
        for i in study.parts.indices {
            study.parts[i].grid.removeAll { axis in axes.contains { $0.key == axis.key } }
            study.parts[i].grid += axes
        }
        if let name { study.name = name }
        if !table.isEmpty { study.tables = table }
        try StudyRunner(global: global, study: study, jobs: jobs, tags: []).run(dryRun: dryRun)
    }
}

/// A study stage's progress: after each cell, how many are finished and an ETA from the
/// work finished so far, the finished cells' planned steps against the wall time since the
/// stage began (a cell stopped early by patience counts its planned steps, so the ETA errs
/// long; evaluations and checkpoints are in the wall time, so they do not make it swing).
struct StudyProgress {
    let total: Int
    let totalSteps: Int
    var doneCells = 0, doneSteps = 0
    let started = Date()

    init(cells: [PlannedRun]) {
        total = cells.count
        totalSteps = cells.reduce(0) { $0 + $1.config.steps }
    }

    mutating func finished(_ label: String, steps: Int) {
        doneCells += 1
        doneSteps += steps
        let elapsed = Date().timeIntervalSince(started)
        var line = "done [\(label)]: \(doneCells)/\(total) finished, elapsed \(ProgressPrinter.duration(elapsed))"
        if doneSteps > 0 && doneCells < total {
            line += ", ETA " + ProgressPrinter.duration(elapsed * Double(totalSteps - doneSteps) / Double(doneSteps))
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// `--dry-run` output: one line per planned run, parents before the runs that need them,
/// each once: full hash, kind, parent (12 characters, or -), status in the store (or
/// `new`), and the cell label. Tab-separated, so it pipes into `cut` and `awk`.
enum DryRun {
    static func print(_ plans: [(label: String?, plan: PlannedRun)], store: Store?) throws {
        var seen = Set<String>()
        for (label, plan) in plans where seen.insert(plan.hash).inserted {
            let status = try store?.run(hash: plan.hash)?.status.rawValue ?? "new"
            let fields = [plan.hash, plan.config.kind.rawValue, plan.config.parent.map { String($0.prefix(12)) } ?? "-",
                          status] + (label.map { [$0] } ?? [])
            Swift.print(fields.joined(separator: "\t"))
        }
    }
}

/// Executes a study: parents first (shared), then cells, in-process or in `jobs` child
/// processes, then the study's report tables restricted to its own runs.
struct StudyRunner {
    let global: GlobalOptions
    let study: Study
    let jobs: Int
    let tags: [String]

    func run(dryRun: Bool = false) throws {
        // Planning a large grid takes seconds: a signal stops it between cells.
        let stop = Signals.install()
        let cells = try study.cells()
        // Check every cell before anything trains: a sweep with no valid cell is bad input.
        var invalid: [String: String] = [:]
        var checkedParents: [RunConfig] = []
        for cell in cells {
            try stop.check()
            do { try Executor.precheck(cell.config, parent: cell.parent, explicit: cell.explicit) } catch {
                invalid[cell.label] = "\(error)"
            }
            if let parent = cell.parent, !checkedParents.contains(parent) {
                try Executor.precheck(parent, parent: nil)
                checkedParents.append(parent)
            }
        }
        if invalid.count == cells.count, let first = cells.first.flatMap({ invalid[$0.label] }) {
            throw InputError("no valid cell in the sweep (all \(cells.count) rejected); first: \(first)")
        }
        if dryRun {
            let store = try global.existingStore()
            let data = DataProvider()
            var plans: [(String?, PlannedRun)] = []
            for cell in cells {
                try stop.check()
                if let reason = invalid[cell.label] {
                    FileHandle.standardError.write(Data("invalid [\(cell.label)]: \(reason)\n".utf8))
                    continue
                }
                let cellPlans = try Executor.preview(cell.config, explicit: cell.explicit, parent: cell.parent,
                                                     store: store, data: data)
                plans += cellPlans.dropLast().map { (nil, $0) } + [(cell.label, cellPlans.last!)]
            }
            try DryRun.print(plans, store: store)
            return
        }
        let store = try global.openStore()
        let executor = try global.executor(store: store, processes: jobs)
        FileHandle.standardError.write(Data("study \(study.name): \(cells.count) cells\n".utf8))
        var pending: [(label: String, plan: PlannedRun)] = []
        // Each part's runs in order (each parent before its first cell), registered at once
        // as the part's sweep; a run in two parts is a member of both and runs once.
        var members = [[(run: NewRun, tags: [String])]](repeating: [], count: study.parts.count)
        var memberHashes = [Set<String>](repeating: [], count: study.parts.count)
        var pendingHashes = Set<String>()
        func addMember(_ run: NewRun, part: Int, tags: [String]) {
            if memberHashes[part].insert(run.hash).inserted { members[part].append((run, tags)) }
        }
        var skipped = 0, failed = 0
        // Stage 1, the pretraining parents: each distinct one planned once and trained
        // before any cell is planned (a cell inherits its parent's architecture from the
        // completed run). Several parents run as parallel processes like cells do; one
        // alone gets the cores the cells will share.
        var parents: [(config: RunConfig, plan: PlannedRun)] = []
        for cell in cells where invalid[cell.label] == nil {
            guard let parentConfig = cell.parent, !parents.contains(where: { $0.config == parentConfig }) else { continue }
            parents.append((parentConfig, try executor.plan(parentConfig)))
            try executor.stop.check()
        }
        var parentsToTrain: [(String, PlannedRun)] = []
        for (i, parent) in parents.enumerated() where try store.run(hash: parent.plan.hash)?.status != .completed {
            parentsToTrain.append(("parent \(i + 1)/\(parents.count)", parent.plan))
        }
        if !parentsToTrain.isEmpty {
            FileHandle.standardError.write(Data("study \(study.name): \(parentsToTrain.count) of \(parents.count) pretraining parents to train\n".utf8))
        }
        if jobs <= 1 || parentsToTrain.count <= 1 {
            executor.setThreads(global.threads * jobs)
            for (_, plan) in parentsToTrain {
                let result = try executor.execute(plan)
                try executor.stop.check()
                if result.outcome != .completed && result.outcome != .cacheHit {
                    throw CheckFailed("parent pretraining \(plan.hash.prefix(12)) ended \(result.outcome)")
                }
            }
        } else {
            for plan in parentsToTrain.map(\.1) { try executor.register(plan) }
            let parentFailures = try ChildRunner(global: global, jobs: jobs).run(parentsToTrain, completed: [])
            if parentFailures > 0 { throw CheckFailed("\(parentFailures) parent pretraining runs did not complete; run the study again to resume them") }
        }
        executor.setThreads(global.threads)
        // Stage 2, the cells, and the baselines of the data they fine-tune on.
        // What a baseline depends on: its data (task, train size, evaluation examples,
        // context) and the seed of its linear classifier.
        func baselineData(_ c: RunConfig) -> String { "\(c.task)\u{0}\(c.trainSize)\u{0}\(c.evalExamples)\u{0}\(c.context)\u{0}\(c.seed)" }
        var baselineConfigs: [(part: Int, config: RunConfig)] = [], baselineKeys = Set<String>()
        for cell in cells {
            if let reason = invalid[cell.label] {
                skipped += 1
                FileHandle.standardError.write(Data("skipped [\(cell.label)]: \(reason)\n".utf8))
                continue
            }
            var config = cell.config
            var explicit = cell.explicit
            do {
                if let parentConfig = cell.parent, let parentPlan = parents.first(where: { $0.config == parentConfig })?.plan {
                    addMember(try Executor.newRun(parentPlan), part: cell.part, tags: [])
                    config.parent = parentPlan.hash
                    explicit.insert("parent")
                }
                let plan = try executor.plan(config, explicit: explicit)
                addMember(try Executor.newRun(plan), part: cell.part, tags: tags)
                if pendingHashes.insert(plan.hash).inserted { pending.append((cell.label, plan)) }
                if plan.config.isFinetune {
                    let c = plan.config
                    if baselineKeys.insert("\(cell.part)\u{0}" + baselineData(c)).inserted {
                        baselineConfigs.append((cell.part, c))
                    }
                }
            } catch let error as InputError {
                skipped += 1
                FileHandle.standardError.write(Data("skipped [\(cell.label)]: \(error)\n".utf8))
            }
            try executor.stop.check()
        }
        for (part, config) in baselineConfigs {
            for method in BaselineMethod.allCases {
                let plan = try Baselines.plan(method, of: config, data: executor.data)
                addMember(try NewRun(kind: .baseline, config: plan.value, parentHash: nil, datasetFingerprint: plan.fingerprint,
                                     numericsVersion: Baselines.numericsVersion), part: part, tags: tags)
            }
        }
        var sweepIds: [Int64] = []
        for (i, part) in study.parts.enumerated() where !members[i].isEmpty {
            let spec = try JSONValue.object([
                "name": .string(study.sweepName(of: part)),
                "grid": .array(part.grid.map { .object(["key": .string($0.key), "values": .array($0.values)]) }),
            ]).canonicalString
            sweepIds.append(try store.registerSweep(name: study.sweepName(of: part), specJSON: spec, runs: members[i]))
        }
        FileHandle.standardError.write(Data("study \(study.name): \(pending.count) cells registered, sweep id\(sweepIds.count == 1 ? "" : "s") \(sweepIds.map(String.init).joined(separator: ", "))\n".utf8))
        var doneBaselines = Set<String>()
        for (_, config) in baselineConfigs
        where doneBaselines.insert(baselineData(config)).inserted {
            try executor.executeBaselines(of: config)
            try executor.stop.check()
        }
        // What is already completed, read in one query (a sweep may have 100,000 cells).
        let completed = Set(try store.runs(RunSelection(status: .completed, filter: try WhereFilter(
            runs: sweepIds.map { "sweep=\($0)" }.joined(separator: " or ")))).map(\.hash))
        if jobs <= 1 {
            var progress = StudyProgress(cells: pending.map(\.plan).filter { !completed.contains($0.hash) })
            for (i, cell) in pending.enumerated() {
                FileHandle.standardError.write(Data("[\(i + 1)/\(pending.count)] \(cell.label) \(cell.plan.hash.prefix(12))\n".utf8))
                let result = try executor.execute(cell.plan)
                if case .failed = result.outcome { failed += 1 }
                if result.outcome != .cacheHit { progress.finished(cell.label, steps: cell.plan.config.steps) }
                try executor.stop.check()
            }
        } else {
            failed = try ChildRunner(global: global, jobs: jobs).run(pending.map { ($0.label, $0.plan) }, completed: completed)
        }
        FileHandle.standardError.write(Data("study \(study.name): \(pending.count) cells run or cached, \(skipped) skipped, \(failed) failed\n".utf8))
        for table in study.tables {
            print(try ReportCommand.render(store: store, table: table, format: "md",
                                           filter: try WhereFilter(runs: sweepIds.map { "sweep=\($0)" }.joined(separator: " or "))))
        }
        if failed > 0 { throw ExitCode(1) }
    }
}

/// Runs cells as separate `moerec run` processes, at most `jobs` at a time: each cell is
/// fully described by its resolved config, written to a temporary file.
struct ChildRunner {
    let global: GlobalOptions
    let jobs: Int

    /// Runs the cells whose hashes are not in `completed` and returns how many failed. After each
    /// cell it prints the stage's progress with an ETA from the work finished so far: the
    /// finished cells' planned steps against the wall time since the start (cells stopped
    /// early by patience count as their planned steps, so the ETA errs long).
    func run(_ cells: [(String, PlannedRun)], completed: Set<String>) throws -> Int {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moerec-sweep-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let todo = cells.filter { !completed.contains($0.1.hash) }
        if todo.count < cells.count {
            FileHandle.standardError.write(Data("\(cells.count - todo.count) of \(cells.count) already completed (cache hits)\n".utf8))
        }
        var progress = StudyProgress(cells: todo.map(\.1))
        var running: [(Process, String, Int)] = []
        var failed = 0, next = 0
        func reap() {
            running.removeAll { process, label, steps in
                if process.isRunning { return false }
                if process.terminationStatus != 0 {
                    failed += 1
                    FileHandle.standardError.write(Data("cell [\(label)] exited \(process.terminationStatus)\n".utf8))
                }
                progress.finished(label, steps: steps)
                return true
            }
        }
        while next < todo.count || !running.isEmpty {
            reap()
            while running.count < jobs && next < todo.count {
                let (label, plan) = todo[next]
                let file = dir.appendingPathComponent("cell-\(next).json")
                try plan.configJSON.write(to: file, atomically: true, encoding: .utf8)
                let process = Process()
                process.executableURL = URL(fileURLWithPath: exe)
                process.arguments = ["run", file.path, "--store", global.storePath, "--threads", String(global.threads)]
                var environment = ProcessInfo.processInfo.environment
                environment["MOEREC_SWEEP_CHILD"] = "1"
                process.environment = environment
                try process.run()
                FileHandle.standardError.write(Data("[\(next + 1)/\(todo.count)] \(label) \(plan.hash.prefix(12)) pid \(process.processIdentifier)\n".utf8))
                running.append((process, label, plan.config.steps))
                next += 1
            }
            if let signal = Signals.flag?.signal {
                // Each cell gets the signal the sweep got, marks its run interrupted and exits.
                for (p, _, _) in running { kill(p.processIdentifier, signal) }
                for (p, _, _) in running { p.waitUntilExit() }
                throw Interrupted(signal: signal)
            }
            usleep(200_000)
        }
        return failed
    }
}
