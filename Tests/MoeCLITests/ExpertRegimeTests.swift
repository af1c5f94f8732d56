import Foundation
import MoeTestSupport
import XCTest

/// The expert-specialized regimes end to end: the parent scores the experts on the task's
/// text, the choice is stored and shown, `random-experts` trains as many per layer as
/// `esft-gate`, the run reproduces bit for bit, and misplaced keys are refused.
final class ExpertRegimeTests: XCTestCase {
    /// "moe<L>  trains experts a, b (n of E)" lines of `show`, as layer → experts.
    static func trainedExperts(_ show: String) -> [String: [Int]] {
        var result: [String: [Int]] = [:]
        for line in show.split(separator: "\n") where line.contains("trains experts") {
            let fields = line.trimmingCharacters(in: .whitespaces).components(separatedBy: "  ")
            guard let list = fields.first(where: { $0.hasPrefix("trains experts ") }) else { continue }
            let experts = list.dropFirst("trains experts ".count).prefix { $0 != "(" }
            result[fields[0]] = experts.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        return result
    }

    func testExpertSpecializedRegimesChooseStoreAndReproduceTheirExperts() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("esft")
        defer { store.remove() }
        func run(_ regime: String, _ extra: [String] = []) throws -> (hash: String, show: String) {
            let result = try store.moerec(["run", lineage.finetuneFile.path, "--set", "regime=\(regime)",
                                           "--set", "esft_sample_tokens=256"] + extra + Lineage.fewCheckpoints)
            XCTAssertEqual(result.status, 0, result.stderr)
            let hash = try XCTUnwrap(Output.runHash(result.stdout), result.stdout)
            return (hash, try store.moerec(["show", hash]).stdout)
        }
        let gate = try run("esft-gate")
        let chosen = Self.trainedExperts(gate.show)
        XCTAssertEqual(chosen.count, 1, "one sparse layer in the fixture model: \(gate.show)")
        XCTAssertTrue(chosen.values.allSatisfy { !$0.isEmpty && $0.count < 4 }, "\(chosen)")
        // A larger top_p takes at least as many experts.
        let wide = Self.trainedExperts(try run("esft-gate", ["--set", "esft_top_p=0.9"]).show)
        XCTAssertGreaterThan(wide.values.first?.count ?? 0, chosen.values.first?.count ?? 0, "\(wide) vs \(chosen)")
        // The control trains as many experts per layer, drawn by the seed.
        let random = Self.trainedExperts(try run("random-experts").show)
        XCTAssertEqual(random.mapValues(\.count), chosen.mapValues(\.count))
        let token = try run("esft-token")
        XCTAssertFalse(Self.trainedExperts(token.show).isEmpty)
        // The choice is part of what diff compares and reproduce checks.
        let diff = try store.moerec(["diff", gate.hash, token.hash])
        XCTAssertTrue(diff.stdout.contains("experts trained"), diff.stdout)
        let reproduce = try store.moerec(["reproduce", gate.hash])
        XCTAssertEqual(reproduce.status, 0, reproduce.stdout + reproduce.stderr)
        XCTAssertTrue(reproduce.stdout.contains("bit-identical"), reproduce.stdout)
        // Only the selected experts moved: the router and attention are the parent's.
        let parentDiff = try store.moerec(["diff", lineage.moeParent, gate.hash])
        XCTAssertTrue(parentDiff.stdout.contains("groups that differ: experts"), parentDiff.stdout)

        // The ESFT keys with another regime change the hash and do nothing: refused.
        let misplaced = try store.moerec(["run", lineage.finetuneFile.path, "--set", "esft_top_p=0.5"])
        XCTAssertEqual(misplaced.status, 2, misplaced.stderr)
        XCTAssertTrue(misplaced.stderr.contains("esft_top_p"), misplaced.stderr)
        let outOfRange = try store.moerec(["run", lineage.finetuneFile.path, "--set", "regime=esft-gate", "--set", "esft_top_p=0"])
        XCTAssertEqual(outOfRange.status, 2, outOfRange.stderr)
        // A dense parent has no experts to choose.
        let dense = try store.moerec(["run", lineage.finetuneFile.path, "--set", "regime=esft-token", "--set", "parent=\(lineage.denseParent)"])
        XCTAssertEqual(dense.status, 2, dense.stderr)
    }

    /// `forgetting_eval: parent`, the default of a new fine-tuning config: before the first
    /// step the body is the parent's, so its loss on the parent's validation text is the
    /// parent's own final validation loss, to the bit; fine-tuning everything at a high
    /// learning rate on a classification task moves the body away from the corpus, and the
    /// loss rises. Measuring it changes nothing the run learns.
    func testForgettingIsMeasuredOnTheParentsOwnValidationText() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("forgetting")
        defer { store.remove() }
        let result = try store.moerec(["run", lineage.finetuneFile.path, "--set", "lr=0.01", "--set", "steps=30"] + Lineage.fewCheckpoints)
        XCTAssertEqual(result.status, 0, result.stderr)
        let hash = try XCTUnwrap(Output.runHash(result.stdout), result.stdout)
        func value(_ run: String, _ split: String, _ name: String, _ step: String) throws -> String {
            try store.sql("SELECT printf('%!.17g', value) FROM metric_points WHERE run_hash = '\(run)' AND split = '\(split)' AND name = '\(name)' AND step = \(step)")
        }
        let parentFinal = try value(lineage.moeParent, "val", "loss", "(SELECT max(step) FROM metric_points WHERE run_hash = '\(lineage.moeParent)' AND split = 'val' AND name = 'loss')")
        XCTAssertFalse(parentFinal.isEmpty)
        XCTAssertEqual(try value(hash, "val", "parent_lm_loss", "0"), parentFinal, "an unchanged body scores the parent's own validation loss")
        let after = try XCTUnwrap(Double(try value(hash, "val", "parent_lm_loss", "30")))
        let forgetting = try XCTUnwrap(Double(try value(hash, "info", "forgetting", "30")))
        XCTAssertEqual(forgetting, after - Double(parentFinal)!, accuracy: 1e-12)
        XCTAssertGreaterThan(forgetting, 0, "fine-tuning every parameter on the task raised nothing on the corpus")
        let reproduce = try store.moerec(["reproduce", hash])
        XCTAssertEqual(reproduce.status, 0, reproduce.stdout + reproduce.stderr)

        // The same run without the probe (what a config stored before forgetting was
        // measured by default means) is another run, with the same task metrics to the bit.
        let without = try store.moerec(["run", lineage.finetuneFile.path, "--set", "forgetting_eval=none", "--set", "lr=0.01",
                                        "--set", "steps=30"] + Lineage.fewCheckpoints)
        XCTAssertEqual(without.status, 0, without.stderr)
        let other = try XCTUnwrap(Output.runHash(without.stdout), without.stdout)
        XCTAssertNotEqual(other, hash)
        func taskPoints(_ run: String) throws -> String {
            try store.sql("SELECT group_concat(split || '/' || name || '@' || step || '=' || printf('%!.17g', value), ' ') FROM (SELECT * FROM metric_points WHERE run_hash = '\(run)' AND split IN ('train', 'val', 'test') AND name <> 'parent_lm_loss' ORDER BY split, name, step)")
        }
        let measured = try taskPoints(hash)
        XCTAssertTrue(measured.contains("val/acc@30="), measured)
        XCTAssertEqual(try taskPoints(other), measured, "measuring forgetting changed what the run learned")
        XCTAssertEqual(try value(other, "val", "parent_lm_loss", "0"), "", "forgetting_eval=none measures nothing")

        // A pretraining run has nothing to forget: the key does nothing there and is left
        // out of its hash, at either value; the pretraining run is a cache hit.
        for setting in ["forgetting_eval=parent", "forgetting_eval=none"] {
            let pretrain = try store.moerec(["run", lineage.pretrainFile.path, "--set", setting] + Lineage.fewCheckpoints)
            XCTAssertEqual(pretrain.status, 0, pretrain.stderr)
            XCTAssertEqual(Output.runHash(pretrain.stdout), lineage.moeParent, setting + ": " + pretrain.stdout)
        }
    }
}
