import Foundation
import MoeTrain

/// The two reference classifiers of a fine-tuning config, measured on exactly its data:
/// the majority class of its train subset, and the linear n-gram classifier
/// (`LinearBaseline`) trained on that subset; both scored on its validation and test
/// examples (at most `eval_examples` of each, the ones the fine-tuned model is scored on).
public struct BaselineResult: Equatable {
    public var task: String
    public var trainSize: Int
    public var evaluated: (validation: Int, test: Int)
    public var majority: (validation: Double, test: Double)
    public var linear: (validation: Double, test: Double)
    public var seconds: Double

    public static func == (a: BaselineResult, b: BaselineResult) -> Bool {
        a.task == b.task && a.trainSize == b.trainSize && a.evaluated == b.evaluated && a.majority == b.majority
            && a.linear == b.linear
    }
}

public enum Baselines {
    /// Resolves the data of `config` (a fine-tuning config) and measures both baselines.
    public static func measure(_ config: RunConfig, data: DataProvider) throws -> BaselineResult {
        guard config.isFinetune else { throw InputError("kind=pretrain: baselines are classifiers; give a fine-tuning config (kind=finetune)") }
        let prepared = try data.prepare(config)
        guard case let .classification(classes, train, validation, test) = prepared.data,
              let majority = prepared.subsetMajority else {
            throw InputError("task \(config.task): not a classification task")
        }
        let started = Date()
        var linear = LinearBaseline()
        linear.seed = UInt64(config.seed)
        let model = linear.fit(train, classes: classes)
        return BaselineResult(task: config.task, trainSize: train.count, evaluated: (validation.count, test.count),
                              majority: majority,
                              linear: (model.accuracy(validation), model.accuracy(test)),
                              seconds: Date().timeIntervalSince(started))
    }
}
