import ArgumentParser
import Foundation
import MoeExperiment
import MoeJSON
import MoeStore

struct BenchPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Time planning and registering a large sweep (nothing is trained).",
        discussion: """
        Builds a sweep of --cells pretraining cells over a small model on generated text (a \
        grid of seed × 10 learning rates), in a temporary store, and times each phase the way \
        `moerec sweep` runs it: check (grid cells built and every cell validated), plan \
        (config, data and run hash of every cell), register (the sweep and its queued runs, \
        one transaction) and completed (which cells are already done, one query). It then \
        plans the same sweep again, as a rerun of the command does (every run already \
        registered): replan_s. Nothing is trained.

        Examples:
          moerec bench plan
          moerec bench plan --cells 20000 --format json
        """)

    @Option(help: "Cells in the sweep (a multiple of 10).") var cells = 100_000
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        guard cells >= 10 && cells <= 1_000_000 && cells % 10 == 0 else {
            throw ValidationError("--cells \(cells): must be a multiple of 10 in 10...1000000")
        }
        if format == .csv { throw ValidationError("--format csv: use table or json") }
    }

    func run() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moerec-bench-plan-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let corpus = dir.appendingPathComponent("corpus.jsonl")
        try (0..<500).map { "{\"text\": \"line \($0) of the generated planning corpus\"}\n" }.joined()
            .write(to: corpus, atomically: true, encoding: .utf8)
        let base: [String: JSONValue] = ["kind": "pretrain", "corpus": .string(corpus.path), "context": 32, "d_model": 32,
                                         "layers": 2, "heads": 2, "d_ff": 64, "experts": 4, "top_k": 2, "steps": 5]
        let grid: [Study.Axis] = [("seed", (0..<cells / 10).map { .int(Int64($0)) }),
                                  ("lr", (1...10).map { .double(Double($0) * 1e-4) })]
        let study = Study(name: "bench-plan", base: base, parent: nil, grid: grid, tables: [])
        let store = try Store(path: dir.appendingPathComponent("moerec.sqlite").path)
        let executor = try Executor(store: store, threads: 1)
        let quiet: (String) -> Void = { _ in }
        executor.log = quiet
        let stop = StopFlag()

        func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
            let start = Date()
            let value = try body()
            return (value, Date().timeIntervalSince(start))
        }
        let (checked, checkSeconds) = try timed { try StudyExecutor.check(study, stop: stop) }
        let studyExecutor = StudyExecutor(study: study, executor: executor)
        studyExecutor.log = quiet
        let (prepared, _) = try timed { try studyExecutor.prepare(checked, launcher: nil) }
        let phases = studyExecutor.phases
        let (_, replanSeconds) = try timed {
            try studyExecutor.prepare(try StudyExecutor.check(study, stop: stop), launcher: nil)
        }
        store.close()
        let total = checkSeconds + phases.reduce(0) { $0 + $1.seconds }
        var fields: [(String, OrderedJSON)] = [("cells", .int(prepared.pending.count)), ("check_s", .number(checkSeconds))]
        for phase in phases where phase.name != "parents" { fields.append(("\(phase.name)_s", .number(phase.seconds))) }
        fields += [("total_s", .number(total)), ("cells_per_s", .number(Double(prepared.pending.count) / total)),
                   ("replan_s", .number(replanSeconds)), ("peak_rss_mib", .number(ProcessStats.peakRSSMiB()))]
        print(format == .json ? ResultOut.json(fields) : TableOut.keyValues(fields))
    }
}
