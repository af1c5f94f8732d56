import Foundation
import MoeTestSupport
import XCTest

/// `run --dry-run` and `sweep --dry-run`: each resolved config's hash, its parent's and its
/// status, with nothing trained and nothing written (not even a store on a new path).
final class DryRunTests: XCTestCase {
    /// Lines of `--dry-run` output as (hash, kind, parent, status, label).
    func lines(_ stdout: String) -> [[String]] {
        stdout.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }

    func testDryRunPrintsHashesParentsAndStatusAndWritesNothing() throws {
        let store = StoreUnderTest.fresh("cli-dry-run")
        defer { store.remove() }
        let root = store.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 10),
                                 to: root.appendingPathComponent("pretrain.json"))
        let finetune = try write(Fixtures.finetuneConfig(task: data.task, parent: pretrain.path, steps: 10),
                                 to: root.appendingPathComponent("finetune.json"))

        // A new store path: the dry run plans both runs, and creates nothing.
        let before = try store.moerec(["run", finetune.path, "--dry-run"])
        XCTAssertEqual(before.status, 0, before.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.dir.path), "a dry run created the store directory")
        let planned = lines(before.stdout)
        XCTAssertEqual(planned.count, 2, before.stdout)
        XCTAssertEqual(Array(planned[0].dropFirst()), ["pretrain", "-", "new"])
        XCTAssertEqual(planned[1][1...3], ["finetune", String(planned[0][0].prefix(12)), "new"])

        // After the parent is trained, the same dry run says so, and the store is byte-unchanged.
        let parent = try store.moerec(["run", pretrain.path])
        XCTAssertEqual(parent.status, 0, parent.stderr)
        XCTAssertEqual(Output.runHash(parent.stdout), planned[0][0], "the dry run's parent hash is the trained one")
        // (Another command first, so that SQLite's write-ahead log of the training run is
        // folded into the database file before the snapshot.)
        XCTAssertEqual(try store.moerec(["runs"]).status, 0)
        let snapshot = try store.snapshot()
        let after = try store.moerec(["run", finetune.path, "--dry-run"])
        XCTAssertEqual(after.status, 0, after.stderr)
        XCTAssertEqual(lines(after.stdout).map { $0[3] }, ["completed", "new"], after.stdout)
        XCTAssertEqual(lines(after.stdout).map { $0[0] }, planned.map { $0[0] })
        XCTAssertEqual(try store.snapshot().changes(since: snapshot), [])

        // A sweep lists each cell once after the shared parent, with its grid label.
        let sweep = try store.moerec(["sweep", finetune.path, "--grid", "regime=all,attention", "--grid", "seed=0,1", "--dry-run"])
        XCTAssertEqual(sweep.status, 0, sweep.stderr)
        let cells = lines(sweep.stdout)
        XCTAssertEqual(cells.count, 5, sweep.stdout)
        XCTAssertEqual(cells[0][0], planned[0][0])
        XCTAssertEqual(Set(cells.dropFirst().map { $0[0] }).count, 4, "four distinct cells")
        XCTAssertTrue(cells.dropFirst().allSatisfy { $0[2] == String(planned[0][0].prefix(12)) && $0[3] == "new" }, sweep.stdout)
        XCTAssertTrue(cells.dropFirst().contains { $0[0] == planned[1][0] }, "regime=all seed=0 is the single run's hash")
        XCTAssertEqual(try store.snapshot().changes(since: snapshot), [])

        // The planned fine-tuning hash is the one a real run gets.
        let trained = try store.moerec(["run", finetune.path])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        XCTAssertEqual(Output.runHash(trained.stdout), planned[1][0])
    }
}
