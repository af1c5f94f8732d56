import Foundation
import MoeTestSupport
import XCTest

/// A study with several pretraining parents and `--jobs 2` schedules the parents first and
/// starts each cell as soon as its own parent is trained, while later parents still train;
/// the runs are the ones the same study trains with `--jobs 1` (parents first, then cells),
/// bit for bit; a cell whose parent fails is not run.
final class StudyScheduleTests: XCTestCase {
    func testCellsStartWhenTheirParentIsTrainedAndMatchTheSerialStudy() throws {
        let parallel = StoreUnderTest.fresh("cli-schedule-parallel"), serial = StoreUnderTest.fresh("cli-schedule-serial")
        defer { parallel.remove(); serial.remove() }
        let root = parallel.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 40), to: root.appendingPathComponent("pt.json"))
        let ft = try write(Fixtures.finetuneConfig(task: data.task, parent: pretrain.path, steps: 20),
                           to: root.appendingPathComponent("ft.json"))
        let study = ["sweep", ft.path, "--grid", "parent.seed=0,1,2", "--grid", "regime=all,attention", "--threads", "1"]

        let p = try parallel.moerec(study + ["--jobs", "2"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stderr.contains("3 of 3 pretraining parents to train, each parent's cells as soon as it is trained"), p.stderr)
        let lines = p.stderr.split(separator: "\n").map(String.init)
        // Parents 1 and 2 start together and parent 3 takes the first free slot; the second
        // free slot goes to a cell of a trained parent while parent 3 still trains.
        let firstCell = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("[") && $0.contains(" pid ") && !$0.contains("] parent ") }, p.stderr)
        let lastParentDone = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("done [parent 3/3]") }, p.stderr)
        XCTAssertLessThan(firstCell, lastParentDone, "no cell started before the last parent was trained:\n\(p.stderr)")
        // One schedule, so the progress counts the whole study: 3 parents and 6 cells.
        XCTAssertTrue(p.stderr.contains(": 9/9 finished"), p.stderr)
        for (start, line) in lines.enumerated() where line.hasPrefix("[") && line.contains(" pid ") && !line.contains("] parent ") {
            // Every cell names its parent's seed in its label; it starts after that parent is done.
            let seed = try XCTUnwrap(line.range(of: #"parent\.seed=\d"#, options: .regularExpression).map { String(line[$0].last!) }, line)
            let parentIndex = Int(seed)! + 1
            let parentDone = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("done [parent \(parentIndex)/3]") }, p.stderr)
            XCTAssertLessThan(parentDone, start, "a cell started before its parent was trained: \(line)")
        }

        let s = try serial.moerec(study + ["--jobs", "1"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let completed = "SELECT hash FROM runs WHERE status = 'completed' AND kind <> 'baseline' ORDER BY hash"
        let hashes = try parallel.sql(completed).split(separator: "\n").map(String.init)
        XCTAssertEqual(hashes.count, 9)
        XCTAssertEqual(try serial.sql(completed).split(separator: "\n").map(String.init), hashes)
        for hash in hashes {
            XCTAssertEqual(try parallel.metricSeries(hash), try serial.metricSeries(hash), "metrics of \(hash)")
            XCTAssertEqual(try parallel.checkpointManifests(hash), try serial.checkpointManifests(hash), "checkpoints of \(hash)")
        }
    }

    func testCellsOfAFailedParentAreNotRun() throws {
        let store = StoreUnderTest.fresh("cli-schedule-failed-parent")
        defer { store.remove() }
        let root = store.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        // lr 10 without clipping (after a 5-step warm-up): with weight decay 1 every decayed weight is
        // multiplied by −9 per step, so that parent diverges; the other may or may not.
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 30, extra: [
            "lr": "10", "grad_clip": "0", "schedule": "\"constant\""]), to: root.appendingPathComponent("pt.json"))
        let ft = try write(Fixtures.finetuneConfig(task: data.task, parent: pretrain.path, steps: 10),
                           to: root.appendingPathComponent("ft.json"))
        let r = try store.moerec(["sweep", ft.path, "--grid", "parent.weight_decay=0,1", "--grid", "regime=all,attention",
                                  "--jobs", "2", "--threads", "1"])
        XCTAssertEqual(r.status, 1, "a study with failed runs exits 1: \(r.stderr)")
        let parents = try store.sql("SELECT hash, status FROM runs WHERE kind = 'pretrain' ORDER BY hash")
            .split(separator: "\n").map { $0.split(separator: "|").map(String.init) }
        XCTAssertEqual(parents.count, 2)
        XCTAssertTrue(parents.contains { $0[1] == "failed" }, "the weight-decay-1 parent did not fail: \(parents)")
        for parent in parents {
            let cells = try store.sql("SELECT status FROM runs WHERE parent_hash = '\(parent[0])' ORDER BY hash").split(separator: "\n")
            XCTAssertEqual(cells.count, 2, "both cells of \(parent[0]) are registered")
            if parent[1] == "failed" {
                XCTAssertEqual(Set(cells), ["queued"], "cells of a failed parent are not run")
                XCTAssertTrue(r.stderr.contains("not run: its pretraining parent \(parent[0].prefix(12)) did not complete"), r.stderr)
            } else {
                XCTAssertEqual(Set(cells), ["completed"], "cells of a trained parent run")
            }
        }
    }
}

/// A study's child processes train the runs it planned. The canonical config leaves out a
/// key at its introduction value (`forgetting_eval: none`, which a stored config without
/// the key means); the config file a child gets writes it in, since a file without it gets
/// today's default (`parent`), another run.
final class StudyChildConfigTests: XCTestCase {
    func testCellsAtAnIntroductionValueTrainThePlannedRuns() throws {
        let store = StoreUnderTest.fresh("cli-schedule-introduction-value")
        defer { store.remove() }
        let root = store.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 20), to: root.appendingPathComponent("pt.json"))
        let ft = try write(Fixtures.finetuneConfig(task: data.task, parent: pretrain.path, steps: 10,
                                                   extra: ["forgetting_eval": "\"none\""]), to: root.appendingPathComponent("ft.json"))
        let r = try store.moerec(["sweep", ft.path, "--grid", "regime=all,attention", "--grid", "parent.seed=0,1", "--jobs", "2",
                                  "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(store.count("SELECT count(*) FROM runs WHERE kind = 'finetune'"), 4, "no run besides the planned ones: \(r.stderr)")
        XCTAssertEqual(store.count("""
            SELECT count(*) FROM sweep_members m JOIN runs r ON r.hash = m.run_hash
            WHERE r.kind = 'finetune' AND r.status = 'completed' AND r.config_json NOT LIKE '%forgetting_eval%'
            """), 4, "the sweep's cells are completed under their planned hashes: \(r.stderr)")
    }
}
