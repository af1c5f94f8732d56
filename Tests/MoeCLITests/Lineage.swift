import Foundation
import MoeTestSupport
import XCTest

/// A small store shared by the tests that only read it (or read a copy of it): a 4-expert
/// pretraining run, a dense (experts = 1) pretraining run, and two fine-tuning runs of the
/// MoE parent under the `attention` and `ffn` regimes. Built once per test process.
final class Lineage {
    let root: URL
    let data: (corpus: URL, task: URL)
    let store: StoreUnderTest
    /// A fine-tuning config file (regime `all`) whose parent is `moeParent`, for tests to vary with --set.
    let finetuneFile: URL
    /// The pretraining config file of `moeParent`.
    let pretrainFile: URL
    let moeParent: String, denseParent: String, attention: String, ffn: String

    /// Overrides that keep the fixture fast: one checkpoint (the last step) per run.
    static let fewCheckpoints = ["--set", "checkpoint_interval=1000"]

    private static let built = Result { try Lineage() }

    static func shared() throws -> Lineage { try built.get() }

    private init() throws {
        root = TestSupport.temporaryDirectory("cli-lineage")
        Lineage.cleanupAtExit(root)
        data = try Fixtures.writeData(in: root)
        store = StoreUnderTest(dir: root.appendingPathComponent("store"))

        pretrainFile = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 30), to: root.appendingPathComponent("pretrain.json"))
        moeParent = try Lineage.train(store, ["run", pretrainFile.path] + Lineage.fewCheckpoints)
        denseParent = try Lineage.train(store, ["run", pretrainFile.path, "--set", "experts=1", "--set", "top_k=1",
                                                "--set", "steps=10"] + Lineage.fewCheckpoints)
        finetuneFile = try write(Fixtures.finetuneConfig(task: data.task, parent: moeParent, regime: "all", steps: 20),
                                 to: root.appendingPathComponent("finetune.json"))
        attention = try Lineage.train(store, ["run", finetuneFile.path, "--set", "regime=attention"] + Lineage.fewCheckpoints)
        ffn = try Lineage.train(store, ["run", finetuneFile.path, "--set", "regime=ffn"] + Lineage.fewCheckpoints)
    }

    private static func train(_ store: StoreUnderTest, _ args: [String]) throws -> String {
        let result = try store.moerec(args)
        guard result.status == 0, let hash = Output.runHash(result.stdout), result.stdout.contains("completed") else {
            throw TestFailure("fixture run \(args) failed (\(result.status)):\n\(result.stdout)\n\(result.stderr)")
        }
        return hash
    }

    private static var toRemove: URL?

    private static func cleanupAtExit(_ url: URL) {
        toRemove = url
        atexit { if let url = Lineage.toRemove { try? FileManager.default.removeItem(at: url) } }
    }
}
