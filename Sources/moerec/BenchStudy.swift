import ArgumentParser
import Foundation
import MoeExperiment
import MoeJSON
import MoeStore

struct BenchStudy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "study",
        abstract: "Where a study's wall time went: training steps, evaluation, checkpoints, the rest.",
        discussion: """
        Reads the completed runs selected by --where (default: every run) from the store and \
        splits the study's core time: the span from the first run's start to the last \
        one's finish, times the most worker threads that were ever running at once (each \
        run counts with its --threads), is divided into training steps, evaluation and \
        checkpoints (each run's recorded timing series, times its threads), the rest of \
        each run's time (set-up, data, the store), the cores completed runs outside the \
        selection used meanwhile (other_runs: the parents, when --where selects a study's \
        fine-tuning runs), and what no run used (process start, planning, baselines, cores \
        idle while the last runs finish). not_training_share is of the selection's own core \
        time (other runs' left out). Nothing is trained or written.

        Examples:
          moerec bench study --where "sweep=1 or sweep=2"
          moerec bench study --store runs/paper.sqlite --format json
          moerec bench study --where kind=finetune
        """)

    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("where"), help: "Filter expression selecting the study's runs, e.g. \"sweep=3\".") var whereExpression: String?
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        if format == .csv { throw ValidationError("--format csv: use table or json") }
    }

    func run() throws {
        let store = try global.readStore()
        let filter = try whereExpression.map { try WhereFilter(runs: $0) }
        guard let t = try StudyTime.measure(store: store, selection: RunSelection(filter: filter)) else {
            throw InputError("no completed runs\(whereExpression.map { " match --where \($0)" } ?? " in the store")")
        }
        let slots = t.coreSeconds
        func share(_ x: Double) -> Double { slots > 0 ? x / slots : .nan }
        var fields: [(String, OrderedJSON)] = [
            ("runs", .int(t.runs)), ("span_s", .number(t.span)), ("cores", .int(t.cores)),
            ("core_s", .number(slots)),
        ]
        for (name, seconds) in [("training", t.training), ("evaluation", t.evaluation), ("checkpoints", t.checkpoints),
                                ("other_in_runs", t.otherInRuns), ("other_runs", t.otherRuns), ("outside_runs", t.outsideRuns)] {
            fields.append(("\(name)_s", .number(seconds)))
            fields.append(("\(name)_share", .number(share(seconds))))
        }
        fields.append(("not_training_share", .number(t.notTrainingShare)))
        fields.append(("runs_without_phase_times", .int(t.runsWithoutPhaseTimes)))
        print(format == .json ? ResultOut.json(fields) : TableOut.keyValues(fields))
    }
}
