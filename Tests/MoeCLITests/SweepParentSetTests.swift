import Foundation
import MoeTestSupport
import XCTest

/// `moerec sweep --set parent.KEY=VALUE` sets KEY on the study's parent config alone: the
/// planned parent is the run the pretraining config with `--set KEY=VALUE` plans, and a
/// key a pretraining run does not have is refused with exit 2, writing nothing.
final class SweepParentSetTests: XCTestCase {
    func testSetOnTheParentPlansThatParent() throws {
        let store = StoreUnderTest.fresh("cli-sweep-parent-set")
        defer { store.remove() }
        let root = store.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 40), to: root.appendingPathComponent("pt.json"))
        let ft = try write(Fixtures.finetuneConfig(task: data.task, parent: pretrain.path, steps: 20), to: root.appendingPathComponent("ft.json"))

        func parentHash(_ dryRun: CLI.Result) -> String? {
            dryRun.stdout.split(separator: "\n").first { $0.contains("\tpretrain\t") }.map { String($0.prefix(64)) }
        }
        let expected = try store.moerec(["run", pretrain.path, "--set", "steps=25", "--dry-run"])
        XCTAssertEqual(expected.status, 0, expected.stderr)
        let sweep = try store.moerec(["sweep", ft.path, "--set", "parent.steps=25", "--grid", "regime=all,attention", "--dry-run"])
        XCTAssertEqual(sweep.status, 0, sweep.stderr)
        XCTAssertNotNil(parentHash(expected), expected.stdout)
        XCTAssertEqual(parentHash(sweep), parentHash(expected), sweep.stdout)
        let plain = try store.moerec(["sweep", ft.path, "--grid", "regime=all,attention", "--dry-run"])
        XCTAssertNotEqual(parentHash(plain), parentHash(sweep), "--set parent.steps changed nothing")

        let refused = try store.moerec(["sweep", ft.path, "--set", "parent.regime=moe", "--grid", "regime=all"])
        XCTAssertEqual(refused.status, 2, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--set parent.regime: regime is not a key of a pretraining parent"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.database.path), "a refused sweep wrote a store")

        // A bad grid value is named as the axis was given, on the parent or on the cells.
        for (axis, expected) in [("parent.seed=0,x", "--grid parent.seed=x: expected an integer"),
                                 ("seed=0,1.5e", "--grid seed=1.5e: expected an integer"),
                                 ("parent.norm=layernorm,bogus", "--grid: parent.norm=bogus: expected one of")] {
            let bad = try store.moerec(["sweep", ft.path, "--grid", axis, "--dry-run"])
            XCTAssertEqual(bad.status, 2, bad.stdout + bad.stderr)
            XCTAssertTrue(bad.stderr.contains(expected), axis + ": " + bad.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.database.path), "a refused sweep wrote a store")
    }
}
