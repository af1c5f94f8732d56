import ArgumentParser
import Foundation
import MoeExperiment
import MoeJSON
import MoeMetricNames
import MoeStore

struct Baseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fit and store the majority-class and linear n-gram baselines of a fine-tuning config's data.",
        discussion: """
        Resolves CONFIG and --set like `moerec run` (a fine-tuning config: task, train_size, \
        eval_examples, test_examples, context, seed) and fits two reference classifiers on exactly the data \
        a fine-tuned model of that config sees: the majority class of the train subset, and \
        multinomial logistic regression on hashed word 1-2-grams and character 2-5-grams \
        (TF-IDF), trained on the train subset as truncated to the context; both scored on the \
        same validation and test examples. A fine-tuned model below the linear baseline has \
        not learned the task.

        Each baseline is stored as a run of kind `baseline`, hashed from its config (the \
        data keys, and for the linear classifier its seed and fitting settings) and the \
        data's fingerprint: a stored one is a cache hit, `moerec runs --where kind=baseline` \
        lists them, `reproduce` re-fits one bit for bit, and reports show them as reference \
        rows beside the fine-tuning groups on the same data. Studies (`sweep`, `run \
        --preset`) fit them for every task, train size and seed they fine-tune on. The \
        parent is not needed and not read.

        Examples:
          moerec baseline --set kind=finetune --set train_size=4096
          moerec baseline finetune.yaml --format json
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Fine-tuning config file (JSON or YAML).") var config: String?
    @Option(name: .customLong("set"), help: "Override one key: --set key=value (repeatable).") var sets: [String] = []
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        if format == .csv { throw ValidationError("--format csv: use table or json") }
    }

    func run() throws {
        var (resolved, _) = try ConfigResolver.resolve(file: config, sets: sets)
        // The parent does not change the data; a placeholder keeps validation whole.
        if resolved.isFinetune { resolved.parent = String(repeating: "0", count: 64) }
        // Everything is checked before the store is opened: bad input writes nothing.
        let data = DataProvider()
        let plans = try BaselineMethod.allCases.map { try Baselines.plan($0, of: resolved, data: data) }
        let store = try global.openStore()
        let executor = try global.executor(store: store, data: data)
        executor.stop = Signals.install()
        let results = try executor.executeBaselines(of: resolved)
        var fields: [(String, OrderedJSON)] = [("task", .string(resolved.task)), ("train_size", .int(resolved.trainSize))]
        for (plan, result) in zip(plans, results) {
            let name = plan.method.rawValue
            fields.append(("\(name)_hash", .string(result.hash)))
            fields.append(("\(name)_cached", .bool(result.outcome == .cacheHit)))
            for split in [Split.val, Split.test] {
                let value = try store.metrics(runHash: result.hash, name: MetricName.accuracy, split: split).first?.value
                fields.append(("\(name)_\(split)_acc", .optional(value)))
            }
        }
        print(format == .json ? ResultOut.json(fields) : TableOut.keyValues(fields))
    }
}
