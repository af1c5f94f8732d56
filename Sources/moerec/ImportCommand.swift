import ArgumentParser
import Foundation
import MoeExperiment
import MoeJSON
import MoeStore

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring in runs trained elsewhere (a run log, a Hugging Face Trainer, MLflow).",
        discussion: """
        FORMAT is one of:
          run-log  moerec's run log, one JSON Lines file per run: a header line \
        {"moerec_run_log": 1, "config": {...}, "parent": "...", "status": "completed"}, then \
        one {"step": S, "split": "val", "name": "acc", "value": V} per point (README \
        "Imported runs").
          trainer  a Hugging Face Trainer output directory (its trainer_state.json): \
        eval_* keys are the val split, test_* the test split, loss and learning_rate \
        training-step values. The Trainer does not record the study keys: give them \
        with --set.
          mlflow   an MLflow tracking store: an mlruns/ directory (file store) or an SQLite \
        database file (sqlite backend). Params become config keys (--map param=key renames \
        one); metric histories keep their steps.

        Every imported run needs the study keys task, regime, experts, seed and train_size \
        (from the source or --set). Its parent is --parent (or the source's parent): a run \
        of this store named by its full hash, or a pretrained model named by anything else. \
        A run is hashed from its config and a fingerprint of its imported content: \
        importing the same run again adds nothing. Imported runs are marked as imported in \
        runs and show, verify re-checks their fingerprint, reproduce refuses them.

        Everything is read and checked before the store is opened: bad input (a malformed \
        file, a metric without a step, a missing study key, NaN without --allow-nan) is \
        exit 2 naming the file, line or key, and nothing is written. MLflow runs that are \
        deleted, RUNNING or SCHEDULED are passed over (listed on stderr).

        Examples:
          moerec import run-log runs-from-torch/*.jsonl
          moerec import trainer out/all-seed1 --parent my-moe-base --set task=wn-supersense \\
            --set regime=all --set experts=8 --set seed=1 --set train_size=4096
          moerec import mlflow mlruns --map finetune_regime=regime --map num_experts=experts
          moerec import mlflow mlflow.db --experiment st-moe --map val_top1=val/acc
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "run-log, trainer or mlflow.") var format: RunImport.Format
    @Argument(help: "Files or directories to import.") var paths: [String] = []
    @Option(name: .customLong("set"), help: "key=value: a config key of every imported run (repeatable).") var settings: [String] = []
    @Option(help: "from=to: an MLflow param (or config key) renamed to config key `to`; from=split/name stores a logged key under that split and name (repeatable).")
    var map: [String] = []
    @Option(help: "The pretrained model the runs fine-tuned: a run hash of this store, or a name.") var parent: String?
    @Option(help: "MLflow: import the runs of this experiment only.") var experiment: String?
    @Flag(name: .customLong("allow-nan"), help: "Store NaN values as missing values (as moerec stores a diverged run's) instead of refusing them.")
    var allowNaN = false
    @Option(name: .customLong("format"), help: "table or json.") var output: OutputFormat = .table

    /// `key=value` with a non-empty key.
    static func pair(_ text: String, option: String) throws -> (String, String) {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw ValidationError("\(option) \(text): expected key=value")
        }
        return (String(text[..<eq]), String(text[text.index(after: eq)...]))
    }

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one path to import") }
        if output == .csv { throw ValidationError("--format csv: use table or json") }
        for s in settings { _ = try Import.pair(s, option: "--set") }
        for m in map {
            let (_, to) = try Import.pair(m, option: "--map")
            if to.contains("/") {
                let parts = to.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw ValidationError("--map \(m): a metric maps to split/name, e.g. val/acc")
                }
            } else if to.isEmpty {
                throw ValidationError("--map \(m): the new key is empty")
            }
        }
        if format != .mlflow, experiment != nil { throw ValidationError("--experiment selects MLflow runs (format mlflow)") }
        if let parent, parent.isEmpty { throw ValidationError("--parent: empty name") }
    }

    func run() throws {
        var options = RunImport.Options()
        options.set = try settings.map { try Import.pair($0, option: "--set") }
        options.map = try map.map { try Import.pair($0, option: "--map") }
        options.parent = parent
        options.experiment = experiment
        options.allowNaN = allowNaN
        // Read and check everything before the store is opened (or created).
        let read = try RunImport.read(format, paths: paths, options: options)
        for line in read.skipped { FileHandle.standardError.write(Data("passed over: \(line)\n".utf8)) }
        if read.runs.isEmpty { throw InputError("nothing to import in \(paths.joined(separator: ", "))") }
        let store = try global.openStore()
        let summary: ImportSummary
        do { summary = try store.importRuns(read.runs) } catch StoreError.unknownParent(let hash) {
            throw InputError("parent \(hash.prefix(12)) is not a run of \(store.path) (nothing was written); name a stored run by its full hash, or a model by a name that is not a hash")
        }
        let added = Set(summary.added)
        let children = read.runs.filter { $0.kind == .finetune }
        if output == .json {
            let rows = children.map { run in
                OrderedJSON.object([("run", .string(run.hash)), ("added", .bool(added.contains(run.hash))),
                                    ("source", .string(run.source)), ("status", .string(run.status.rawValue)),
                                    ("points", .int(run.points.count))])
            }
            print(OrderedJSON.object([("runs", .array(rows)), ("added", .int(children.filter { added.contains($0.hash) }.count)),
                                      ("already_stored", .int(children.filter { !added.contains($0.hash) }.count)),
                                      ("metric_points", .int(summary.metricPoints))]).rendered())
            return
        }
        for run in children {
            print("\(added.contains(run.hash) ? "added " : "stored") \(run.hash.prefix(12))  \(run.status.rawValue)  \(run.points.count) points  \(run.source)")
        }
        let newChildren = children.filter { added.contains($0.hash) }.count
        print("\(newChildren) runs added, \(children.count - newChildren) already stored, \(summary.metricPoints) metric points")
    }
}

extension RunImport.Format: ExpressibleByArgument {}
