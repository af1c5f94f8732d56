import Foundation
import MoeJSON
import MoeReport
import MoeStore
import XCTest

/// A store in a fresh temporary directory, removed when the object goes away.
final class ScratchStore {
    let directory: String
    let store: Store

    init(_ label: String = "report") throws {
        directory = (NSTemporaryDirectory() as NSString).appendingPathComponent("moereport-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try Store(path: (directory as NSString).appendingPathComponent("store.sqlite"))
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    var path: String { store.path }

    /// A completed pretraining run to hang fine-tuning runs from.
    /// A completed pretraining run; `seed` tells apart parents pretrained alike, `extra`
    /// sets other keys of its config (a different recipe).
    func pretrain(experts: Int, seed: Int = 0, extra: [String: JSONValue] = [:]) throws -> String {
        var object: [String: JSONValue] = ["kind": "pretrain", "experts": .int(Int64(experts)), "seed": .int(Int64(seed))]
        for (key, value) in extra { object[key] = value }
        let config = JSONValue.object(object)
        let run = try store.insertRun(kind: .pretrain, config: config, parentHash: nil, datasetFingerprint: "fixture",
                                      numericsVersion: 1)
        try store.markRunning(hash: run.hash, environment: RunEnvironment())
        try store.markCompleted(hash: run.hash, wallSeconds: 1, steps: 10)
        return run.hash
    }

    /// A fine-tuning config shaped like moerec's resolved ones (only the keys reports use,
    /// plus a few that stay constant).
    static func config(parent: String, regime: String, experts: Int, seed: Int, trainSize: Int = 256,
                       task: String = "wn-supersense", lr: Double = 1e-3) -> [String: JSONValue] {
        ["kind": "finetune", "task": .string(task), "train_size": .int(Int64(trainSize)), "experts": .int(Int64(experts)),
         "top_k": .int(experts == 1 ? 1 : 2), "regime": .string(regime), "groups": [], "seed": .int(Int64(seed)),
         "steps": 100, "lr": .double(lr), "dropout": 0.1, "parent": .string(parent)]
    }

    /// Inserts a fine-tuning run, writes its curves and timing, and leaves it in `status`.
    /// Test accuracy is written where `curve.testAcc` is finite, and equals the validation
    /// accuracy at every evaluation when the curve has no test values at all.
    @discardableResult
    func finetune(parent: String, regime: String, experts: Int, seed: Int, trainSize: Int = 256,
                  task: String = "wn-supersense", lr: Double = 1e-3, curve: Curve, stepTimes: [Double] = [0.1],
                  trainableFraction: Double = 1, status: RunStatus = .completed, extra: [String: JSONValue] = [:],
                  forgetting: Double? = nil, selected: StepEvaluation? = nil) throws -> String {
        // A run with a selected evaluation (`test_eval: selected`) measures test only there.
        let testAcc = curve.testAcc.contains(where: \.isFinite) || selected != nil ? curve.testAcc : curve.valAcc
        var config = ScratchStore.config(parent: parent, regime: regime, experts: experts, seed: seed, trainSize: trainSize,
                                         task: task, lr: lr)
        for (k, v) in extra { config[k] = v }
        let run = try store.insertRun(kind: .finetune, config: .object(config), parentHash: parent,
                                      datasetFingerprint: "fixture", numericsVersion: 1)
        if status == .queued { return run.hash }
        try store.markRunning(hash: run.hash, environment: RunEnvironment())
        let writer = try store.metricWriter(runHash: run.hash)
        try writer.add(step: 0, split: "info", name: "trainable_fraction", value: trainableFraction)
        try writer.add(step: 0, split: "info", name: "parameters", value: 1000)
        try writer.add(step: 0, split: "info", name: "majority_acc", value: 0.2)
        if let forgetting { try writer.add(step: 100, split: "info", name: "forgetting", value: forgetting) }
        for (i, t) in stepTimes.enumerated() {
            try writer.add(step: i + 1, split: "timing", name: "step_time", value: t)
            try writer.add(step: i + 1, split: "step", name: "loss", value: 9)  // other series must not leak in
        }
        for (i, step) in curve.steps.enumerated() {
            try writer.add(step: step, split: "train", name: "loss", value: curve.trainLoss[i])
            try writer.add(step: step, split: "val", name: "loss", value: curve.valLoss[i])
            try writer.add(step: step, split: "train", name: "acc", value: curve.trainAcc[i])
            try writer.add(step: step, split: "val", name: "acc", value: curve.valAcc[i])
            if testAcc[i].isFinite { try writer.add(step: step, split: "test", name: "acc", value: testAcc[i]) }
            try writer.add(step: step, split: "test", name: "loss", value: 9)  // not read by reports
        }
        if let e = selected {
            for (split, loss, acc) in [("train", e.trainLoss, e.trainAcc), ("val", e.valLoss, e.valAcc), ("test", e.valLoss + 0.1, e.testAcc)] {
                try writer.add(step: e.step, split: split, name: "selected_loss", value: loss)
                try writer.add(step: e.step, split: split, name: "selected_acc", value: acc)
            }
        }
        try writer.flush()
        switch status {
        case .completed: try store.markCompleted(hash: run.hash, wallSeconds: 5, steps: 100)
        case .failed: try store.markFailed(hash: run.hash, reason: "non-finite loss (nan) at step 40", step: 40)
        case .interrupted: try store.markInterrupted(hash: run.hash, reason: "stopped by signal")
        case .running, .queued: break
        }
        return run.hash
    }
}

/// Curves whose best validation accuracy is `best` at step 20, with train accuracy
/// `best + gap` there; validation loss bottoms out at step 20 and then rises while train
/// loss keeps falling (onset at step 30) unless `overfit` is false.
func peakedCurve(best: Double, gap: Double = 0.1, endGap: Double? = nil, overfit: Bool = true) -> Curve {
    let steps = [10, 20, 30, 40]
    let valAcc = [best - 0.05, best, best - 0.01, best - 0.02]
    let trainAcc = [valAcc[0] + gap / 2, best + gap, best + gap + 0.02, valAcc[3] + (endGap ?? gap + 0.05)]
    let valLoss = overfit ? [1.5, 1.2, 1.3, 1.4] : [1.5, 1.2, 1.15, 1.1]
    let trainLoss = [1.4, 1.0, 0.8, 0.6]
    return Curve(steps: steps, trainLoss: trainLoss, valLoss: valLoss, trainAcc: trainAcc, valAcc: valAcc)
}

func assertClose(_ a: Double?, _ b: Double, accuracy: Double = 1e-9, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    guard let a else { return XCTFail("nil, expected \(b) \(message)", file: file, line: line) }
    XCTAssertEqual(a, b, accuracy: accuracy, message, file: file, line: line)
}
