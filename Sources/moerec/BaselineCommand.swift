import ArgumentParser
import Foundation
import MoeExperiment
import MoeJSON

struct Baseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the majority-class and linear n-gram baselines of a fine-tuning config's data.",
        discussion: """
        Resolves CONFIG and --set like `moerec run` (a fine-tuning config: task, train_size, \
        eval_examples, context, seed) and scores two reference classifiers on exactly the data \
        a fine-tuned model of that config sees: the majority class of the train subset, and \
        multinomial logistic regression on hashed word 1-2-grams and character 2-5-grams \
        (TF-IDF), trained on the train subset as truncated to the context; both on the same \
        validation and test examples. A fine-tuned model below the linear baseline has not \
        learned the task. Nothing is written to the store (baseline runs are not stored yet); \
        the parent is not needed and not read.

        Examples:
          moerec baseline --set kind=finetune --set train_size=4096
          moerec baseline finetune.yaml --format json
        """)

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
        let r = try Baselines.measure(resolved, data: DataProvider())
        let fields: [(String, OrderedJSON)] = [
            ("task", .string(r.task)), ("train_size", .int(r.trainSize)),
            ("validation_examples", .int(r.evaluated.validation)), ("test_examples", .int(r.evaluated.test)),
            ("majority_val_acc", .number(r.majority.validation)), ("majority_test_acc", .number(r.majority.test)),
            ("linear_val_acc", .number(r.linear.validation)), ("linear_test_acc", .number(r.linear.test)),
            ("seconds", .number(r.seconds)),
        ]
        print(format == .json ? ResultOut.json(fields) : TableOut.keyValues(fields))
    }
}
