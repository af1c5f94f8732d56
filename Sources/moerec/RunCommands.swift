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
        table; --preset paper runs the scaled-down ST-MoE protocol (see `moerec sweep`); \
        --preset esft compares expert-specialized fine-tuning (esft-gate, esft-token) with \
        all and with as many random experts, measuring forgetting (README "Expert-specialized \
        fine-tuning").

        Examples:
          moerec run --preset quick
          moerec run pretrain.yaml --set steps=500 --set experts=4
          moerec run --set kind=finetune --set parent=3fa2c1 --set regime=moe
          moerec run finetune.yaml --dry-run
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Config file (JSON or YAML).") var config: String?
    @Option(name: .customLong("set"), help: "Override one key: --set key=value (repeatable).") var sets: [String] = []
    @Option(help: "Run a preset study (quick, paper, esft) instead of one config.") var preset: String?
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
        try requireOption("--jobs", jobs, in: 1...16)
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
        parent.seed=0,1,2: three pretraining runs, each fine-tuned); --set parent.KEY=VALUE \
        sets it on every parent (e.g. parent.steps=24000), an axis of the same key still \
        overriding it (the paper preset's parents and experts-4 parts keep parent.steps=6000). \
        The distinct parents are \
        scheduled first (--jobs runs at once), and each cell starts as soon as its own parent \
        is trained (one parent, or --jobs 1: the parents train first, on all threads); a cell \
        whose parent fails is not run. The majority and linear \
        baselines of every task, train size and seed the cells fine-tune on are fitted and \
        stored with them (seconds each). Interrupt at any time; the same command resumes: \
        completed cells are cache hits and an interrupted cell resumes from its checkpoint.

        --launcher slurm submits the study to Slurm instead of training here: a job array \
        over the pretraining parents not yet completed, a job merging them, a job array over \
        the cells not yet completed (after that merge), and a job merging the cells and \
        writing the report tables (shards/<submission>/report-TABLE.md next to the store). \
        Each task trains into its own shard store under shards/ next to the store, writing \
        checkpoint objects into the store's objects/. Each task gets --threads CPUs and, \
        unless --mem says otherwise, the memory its model needs. Run the same command again \
        to fold finished shards in and resubmit only what is not completed (failed, \
        cancelled or timed-out tasks). With --dry-run the scripts are printed and nothing \
        is submitted or written.

        Examples:
          moerec sweep finetune.yaml --grid regime=all,moe,ffn --grid seed=0,1,2
          moerec sweep finetune.yaml --grid parent.seed=0,1,2 --grid experts=1,8
          moerec sweep --preset paper --jobs 2
          moerec sweep --preset paper --dry-run
          moerec sweep --preset paper --set parent.steps=24000 --set steps=1600 --dry-run
          moerec sweep --preset paper --launcher slurm --partition cpu --time-limit 4:00:00 --threads 4
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Base config file (JSON or YAML); `parent` may be a pretraining config file.") var config: String?
    @Option(name: .customLong("set"), help: "Override one base key: --set key=value, or --set parent.key=value for the parent config alone (repeatable).") var sets: [String] = []
    @Option(help: "A grid axis: key=v1,v2,… or parent.key=v1,v2,… for the parent config (repeatable).") var grid: [String] = []
    @Option(help: "Start from a preset study (quick, paper, esft); --grid replaces its axes of the same key.") var preset: String?
    @Option(help: "Cells run in parallel processes (each with --threads worker threads).") var jobs = 1
    @Option(help: "Sweep name recorded in the store.") var name: String?
    @Option(help: "Report tables to print at the end (regimes, experts, overfit, claims).") var table: [String] = []
    @Flag(help: "Print every cell's hash, its parent's, and whether it is completed, interrupted or new (with --launcher slurm: the job scripts); train, submit and write nothing.")
    var dryRun = false
    @Option(help: "Where the cells train: local (this machine, --jobs processes) or slurm (job arrays).") var launcher: Launcher = .local
    @Option(help: "Slurm partition (--launcher slurm).") var partition: String?
    @Option(help: "Slurm time limit of every job, e.g. 4:00:00 (--launcher slurm).") var timeLimit: String?
    @Option(help: "Slurm account (--launcher slurm).") var account: String?
    @Option(help: "Slurm QOS (--launcher slurm).") var qos: String?
    @Option(help: "An extra #SBATCH option for every job, written --sbatch-line=--constraint=avx512 (repeatable; --launcher slurm).")
    var sbatchLine: [String] = []
    @Option(help: "Memory per task in MiB (--launcher slurm; default: what the model needs).") var mem: Int?
    @Option(help: "The cluster's MaxArraySize: larger arrays are split (--launcher slurm).") var maxArraySize = 1001

    enum Launcher: String, ExpressibleByArgument, CaseIterable { case local, slurm }

    func validate() throws {
        try requireOption("--jobs", jobs, in: 1...16)
        if launcher == .slurm && jobs != 1 { throw ValidationError("--jobs \(jobs): Slurm runs the cells; --jobs is for --launcher local") }
        if launcher == .local, partition != nil || timeLimit != nil || account != nil || qos != nil || !sbatchLine.isEmpty || mem != nil {
            throw ValidationError("--partition, --time-limit, --account, --qos, --sbatch-line and --mem need --launcher slurm")
        }
        if let mem, mem < 64 { throw ValidationError("--mem \(mem): must be at least 64 (MiB)") }
        try requireOption("--max-array-size", maxArraySize, in: 2...4_000_001)
        // Values go into #SBATCH lines: one word each, and a time Slurm can read.
        for (name, value) in [("partition", partition), ("account", account), ("qos", qos)] {
            if let value, value.isEmpty || value.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 32 } == true }) {
                throw ValidationError("--\(name) \(value): expected one word")
            }
        }
        if let timeLimit, timeLimit.range(of: #"^([0-9]+-)?[0-9]+(:[0-9]{1,2}){0,2}$"#, options: .regularExpression) == nil {
            throw ValidationError("--time-limit \(timeLimit): expected MINUTES, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]")
        }
        for line in sbatchLine where !line.hasPrefix("-") || line.contains(where: { $0.isNewline }) {
            throw ValidationError("--sbatch-line \(line): expected one sbatch option such as --constraint=avx512")
        }
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
        for item in sets where !item.hasPrefix(Study.parentPrefix) {
            guard let eq = item.firstIndex(of: "=") else { throw InputError("--set \(item): expected key=value") }
            let key = String(item[..<eq])
            let (_, value) = try ConfigResolver.parseOverride(item)
            study.base[key] = value
        }
        // A parent config file given with --set is the study's parent config, as in a file.
        if study.parent == nil, case let .string(p)? = study.base["parent"], ConfigResolver.isConfigPath(p) {
            study.parent = try ConfigResolver.load(file: p)
            study.base["parent"] = nil
        }
        for item in sets where item.hasPrefix(Study.parentPrefix) { try study.setParentKey(item) }
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
                return try Study.gridValue(String(text), axis: key)
            }
            axes.append((key, values))
        }
        for i in study.parts.indices {
            study.parts[i].grid.removeAll { axis in axes.contains { $0.key == axis.key } }
            study.parts[i].grid += axes
        }
        if let name { study.name = name }
        if !table.isEmpty { study.tables = table }
        var slurm: SlurmOptions?
        if launcher == .slurm {
            var options = SlurmOptions(executable: StudyRunner.executable)
            options.partition = partition; options.timeLimit = timeLimit; options.account = account; options.qos = qos
            options.extraLines = sbatchLine; options.memoryMiB = mem; options.maxArraySize = maxArraySize; options.dryRun = dryRun
            options.sbatch = ProcessInfo.processInfo.environment["MOEREC_SBATCH"] ?? "sbatch"
            options.squeue = ProcessInfo.processInfo.environment["MOEREC_SQUEUE"] ?? "squeue"
            slurm = options
        }
        try StudyRunner(global: global, study: study, jobs: jobs, tags: [], slurm: slurm).run(dryRun: dryRun)
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

/// Executes a study with the library's `StudyExecutor`: in this process, or as `jobs`
/// child processes; then prints the study's report tables restricted to its own runs.
struct StudyRunner {
    let global: GlobalOptions
    let study: Study
    let jobs: Int
    let tags: [String]
    var slurm: SlurmOptions? = nil

    /// This binary's absolute path: what child processes and Slurm tasks run.
    static var executable: String { URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path }

    func run(dryRun: Bool = false) throws {
        let stop = Signals.install()
        let checked = try StudyExecutor.check(study, stop: stop)
        let log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        if let slurm {
            try submit(checked, slurm)
            return
        }
        if dryRun {
            let store = try global.existingStore()
            try DryRun.print(try StudyExecutor.preview(checked, store: store, stop: stop, log: log), store: store)
            return
        }
        let store = try global.openStore()
        let executor = try global.executor(store: store, processes: jobs)
        let launcher: StudyLauncher = jobs <= 1 ? InProcessLauncher()
            : ProcessLauncher(executable: StudyRunner.executable, jobs: jobs)
        let outcome = try StudyExecutor(study: study, executor: executor, tags: tags).run(checked, launcher: launcher)
        for table in study.tables {
            print(try ReportCommand.render(store: store, table: table, format: "md",
                                           filter: try WhereFilter(runs: StudyExecutor.sweepFilter(outcome.sweepIds))))
        }
        if outcome.failed > 0 { throw ExitCode(1) }
    }

    /// `--launcher slurm`: submits (or, dry, prints the scripts) and says how to follow it.
    func submit(_ checked: StudyExecutor.Checked, _ slurm: SlurmOptions) throws {
        // Checked before the store is opened (or created).
        if !slurm.dryRun { try StudyExecutor.checkSlurmSetUp(sbatch: slurm.sbatch, storePath: global.storePath) }
        if let asked = slurm.memoryMiB { try StudyExecutor.checkMemory(StudyExecutor.configs(of: checked), memoryMiB: asked) }
        // A dry run writes nothing: without a store yet it plans against a scratch one.
        var scratch: URL?
        defer { if let scratch { try? FileManager.default.removeItem(at: scratch) } }
        let store: Store
        if slurm.dryRun, let existing = try global.existingStore() {
            store = existing
        } else if slurm.dryRun {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moerec-slurm-dry-run-\(getpid())")
            scratch = dir
            store = try Store(path: dir.appendingPathComponent("moerec.sqlite").path)
        } else {
            store = try global.openStore()
        }
        let executor = try global.executor(store: store)
        let submission = try StudyExecutor(study: study, executor: executor, tags: tags)
            .submit(checked, slurm: slurm, storePath: global.storePath)
        if slurm.dryRun {
            for (name, text) in submission.scripts { print("# \(name)\n\(text)") }
            return
        }
        let line = "study \(study.name): \(submission.parents) parents and \(submission.cells) cells submitted"
        guard !submission.jobs.isEmpty else {
            print("study \(study.name): every run is completed; nothing submitted")
            for table in study.tables {
                print(try ReportCommand.render(store: store, table: table, format: "md",
                                               filter: try WhereFilter(runs: StudyExecutor.sweepFilter(submission.sweepIds))))
            }
            return
        }
        print(line)
        for job in submission.jobs { print("  \(job.stage)\tjob \(job.id)") }
        print("  shards, logs and (at the end) report-TABLE.md in \(submission.directory)")
        print("  follow with: squeue --me; run the same command again to resubmit what did not complete")
    }
}
