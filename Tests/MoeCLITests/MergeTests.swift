import Foundation
import MoeTestSupport
import XCTest

/// `moerec merge`: stores folded into one, idempotently, transactionally, with conflicts
/// reported and unfinished runs kept unfinished.
final class MergeTests: XCTestCase {
    func testMergeIsCompleteIdempotentAndRefusesConflictsAndBadObjects() throws {
        let a = StoreUnderTest.fresh("merge-a"), b = StoreUnderTest.fresh("merge-b"), c = StoreUnderTest.fresh("merge-c")
        defer { for s in [a, b, c] { s.remove() } }
        let root = a.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 20), to: root.appendingPathComponent("pt.json"))
        let finetune = try write(Fixtures.finetuneConfig(task: data.task, parent: pretrain.path), to: root.appendingPathComponent("ft.json"))
        // A: a pretraining run and its fine-tuning child. B: a sweep of two other seeds, tagged.
        XCTAssertEqual(try a.moerec(["run", finetune.path]).status, 0)
        let sweep = try b.moerec(["sweep", pretrain.path, "--grid", "seed=1,2"])
        XCTAssertEqual(sweep.status, 0, sweep.stderr)
        let tagged = try b.runs()[0]["hash"] as! String
        XCTAssertEqual(try b.sql("SELECT count(*) FROM sweeps"), "1")
        try b.sqlWrite("INSERT INTO tags (run_id, tag) SELECT id, 'keep' FROM runs WHERE hash = '\(tagged)'")

        let merged = try c.moerec(["merge", a.database.path, b.database.path, "--format", "json"])
        XCTAssertEqual(merged.status, 0, merged.stdout + merged.stderr)
        let all = Set(try a.runs().compactMap { $0["hash"] as? String } + b.runs().compactMap { $0["hash"] as? String })
        XCTAssertEqual(Set(try c.runs().compactMap { $0["hash"] as? String }), all)
        XCTAssertEqual(try c.statuses().values.filter { $0 != "completed" }, [])
        XCTAssertEqual(try c.sql("SELECT count(*) FROM metrics"),
                       String(Int(try a.sql("SELECT count(*) FROM metrics"))! + Int(try b.sql("SELECT count(*) FROM metrics"))!))
        XCTAssertEqual(try c.sql("SELECT name FROM sweeps"), try b.sql("SELECT name FROM sweeps"))
        XCTAssertEqual(try c.sql("SELECT group_concat(run_hash) FROM (SELECT run_hash FROM sweep_members ORDER BY id)"),
                       try b.sql("SELECT group_concat(run_hash) FROM (SELECT run_hash FROM sweep_members ORDER BY id)"))
        XCTAssertEqual(try c.runs(where: "tag=keep").count, 1)
        let verified = try c.moerec(["verify"])
        XCTAssertEqual(verified.status, 0, verified.stdout + verified.stderr)
        // The merged child fine-tunes from the merged parent: its lineage is whole.
        let child = try XCTUnwrap(try c.runs(where: "kind=finetune").first?["hash"] as? String)
        let reproduced = try c.moerec(["reproduce", child])
        XCTAssertEqual(reproduced.status, 0, reproduced.stdout + reproduced.stderr)

        // Merging again adds nothing.
        let again = try c.moerec(["merge", a.database.path, b.database.path, "--format", "json"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let summaries = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [[String: Any]])
        XCTAssertEqual(summaries.count, 2)
        for summary in summaries {
            for field in ["runs_added", "runs_replaced", "metric_points", "checkpoints", "sweeps_added", "sweep_members_added", "tags_added"] {
                XCTAssertEqual(summary[field] as? Int, 0, "\(field) in \(again.stdout)")
            }
        }
        XCTAssertEqual(try c.sql("SELECT count(*) FROM runs"), String(all.count))
        XCTAssertEqual(try c.sql("SELECT count(*) FROM sweeps"), "1")

        // A completed run with other results is a conflict: reported with both environments, nothing overwritten.
        let tampered = try a.copy("merge-tampered")
        defer { tampered.remove() }
        try tampered.sqlWrite("UPDATE metrics SET value = value + 1 WHERE run_id = (SELECT id FROM runs WHERE hash = '\(child)') AND split = 1")
        let values = try c.sql("SELECT group_concat(value) FROM metrics WHERE run_id = (SELECT id FROM runs WHERE hash = '\(child)')")
        let conflict = try c.moerec(["merge", tampered.database.path])
        XCTAssertEqual(conflict.status, 1, conflict.stdout + conflict.stderr)
        XCTAssertTrue(conflict.stdout.contains("reproducibility conflict: run \(child.prefix(12))"), conflict.stdout)
        XCTAssertTrue(conflict.stdout.contains("this store: host") && conflict.stdout.contains("source: host"), conflict.stdout)
        XCTAssertEqual(try c.sql("SELECT group_concat(value) FROM metrics WHERE run_id = (SELECT id FROM runs WHERE hash = '\(child)')"),
                       values, "a conflicting run was overwritten")

        // A corrupt object stops the merge before anything is written.
        let d = StoreUnderTest.fresh("merge-d")
        defer { d.remove() }
        XCTAssertEqual(try d.moerec(["run", pretrain.path, "--set", "seed=7"]).status, 0)
        let object = try XCTUnwrap(FileManager.default.enumerator(at: d.objects, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.first { !$0.hasDirectoryPath && $0.lastPathComponent.count > 20 })
        try Data("not zlib".utf8).write(to: object)
        try c.moerec(["runs"])
        let clean = try c.snapshot()
        let corrupt = try c.moerec(["merge", d.database.path])
        XCTAssertEqual(corrupt.status, 1, corrupt.stdout + corrupt.stderr)
        XCTAssertTrue(corrupt.stderr.contains("cannot be merged"), corrupt.stderr)
        // (A reader's empty write-ahead log may come and go; the database and objects may not.)
        XCTAssertEqual(try c.snapshot().changes(since: clean).filter { !$0.hasSuffix("-wal") }, [],
                       "a failed merge changed the destination")
        XCTAssertEqual(try c.sql("SELECT count(*) FROM runs"), String(all.count))
    }

    private func summary(_ result: CLI.Result) throws -> [String: Any] {
        try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])?.first, result.stdout)
    }

    /// A merge killed (SIGKILL) while it writes leaves the destination as it was: every
    /// attempt ends with the destination either untouched or holding the whole source.
    func testMergeKilledMidwayLeavesTheDestinationUnchanged() throws {
        let a = StoreUnderTest.fresh("merge-kill-src"), b = StoreUnderTest.fresh("merge-kill-dst")
        defer { for s in [a, b] { s.remove() } }
        let root = a.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 20), to: root.appendingPathComponent("pt.json"))
        XCTAssertEqual(try a.moerec(["sweep", pretrain.path, "--grid", "seed=1,2,3"]).status, 0)
        // Enough metric points that the write takes a while: each run's points, shifted
        // to 2,000 further step ranges.
        try a.sqlWrite("""
            WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 2000)
            INSERT INTO metrics (run_id, name_id, split, step, value)
            SELECT m.run_id, m.name_id, m.split, m.step + 1000 * k.n, m.value FROM metrics m, k
            """)
        let sourcePoints = Int(try a.sql("SELECT count(*) FROM metrics"))!
        XCTAssertGreaterThan(sourcePoints, 500_000)
        // The destination already holds a run of its own.
        XCTAssertEqual(try b.moerec(["run", pretrain.path]).status, 0)
        let before = try b.sql("SELECT count(*) || ' ' || (SELECT count(*) FROM metrics) FROM runs")
        // How long a whole merge takes, on a copy.
        let copy = try b.copy("merge-kill-timing")
        defer { copy.remove() }
        let started = Date()
        XCTAssertEqual(try copy.moerec(["merge", a.database.path]).status, 0)
        let whole = Date().timeIntervalSince(started)
        let after = try copy.sql("SELECT count(*) || ' ' || (SELECT count(*) FROM metrics) FROM runs")
        var killedUnchanged = 0
        for fraction in [0.3, 0.5, 0.7, 0.85] {
            let running = try b.start(["merge", a.database.path])
            usleep(useconds_t(whole * fraction * 1_000_000))
            running.signal(SIGKILL)
            let result = try running.wait(timeout: 60)
            let now = try b.sql("SELECT count(*) || ' ' || (SELECT count(*) FROM metrics) FROM runs")
            XCTAssertTrue(now == before || now == after, "after a kill at \(fraction) of the merge: \(now), neither \(before) nor \(after)")
            XCTAssertEqual(try b.sql("PRAGMA integrity_check"), "ok")
            if result.status != 0 && now == before { killedUnchanged += 1 }
            if now == after { break }
        }
        XCTAssertGreaterThan(killedUnchanged, 0, "no kill landed before the merge committed (whole merge \(whole) s)")
        // A merge after the kills completes it.
        XCTAssertEqual(try b.moerec(["merge", a.database.path]).status, 0)
        XCTAssertEqual(try b.sql("SELECT count(*) || ' ' || (SELECT count(*) FROM metrics) FROM runs"), after)
    }

    /// `--lineage HASH`: that run and its ancestors only (no other runs, sweeps or tags),
    /// with their checkpoints, so the child can be reproduced in the new store.
    func testLineageMergeTakesOneRunAndItsAncestorsOnly() throws {
        let a = StoreUnderTest.fresh("merge-lineage-a"), b = StoreUnderTest.fresh("merge-lineage-b")
        defer { for s in [a, b] { s.remove() } }
        let root = a.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 20), to: root.appendingPathComponent("pt.json"))
        let finetune = try write(Fixtures.finetuneConfig(task: data.task, parent: pretrain.path), to: root.appendingPathComponent("ft.json"))
        let sweep = try a.moerec(["sweep", finetune.path, "--grid", "regime=all,ffn"])
        XCTAssertEqual(sweep.status, 0, sweep.stderr)
        let cells = try a.runs(where: "kind=finetune")
        XCTAssertEqual(cells.count, 2)
        let child = try XCTUnwrap(cells[0]["hash"] as? String), parent = try XCTUnwrap(cells[0]["parent"] as? String)
        let merged = try b.moerec(["merge", a.database.path, "--lineage", child])
        XCTAssertEqual(merged.status, 0, merged.stdout + merged.stderr)
        XCTAssertEqual(Set(try b.runs().compactMap { $0["hash"] as? String }), [child, parent])
        XCTAssertEqual(try b.sql("SELECT count(*) FROM sweeps"), "0")
        XCTAssertEqual(try b.moerec(["reproduce", child]).status, 0)
        let unknown = try b.moerec(["merge", a.database.path, "--lineage", String(repeating: "a", count: 64)])
        XCTAssertNotEqual(unknown.status, 0)
        let short = try b.moerec(["merge", a.database.path, "--lineage", "abc"])
        XCTAssertEqual(short.status, 2, short.stderr)
    }

    func testUnfinishedRunsStayUnfinishedAndAreReplacedByCompletedOnes() throws {
        let a = StoreUnderTest.fresh("merge-unfinished-a"), c = StoreUnderTest.fresh("merge-unfinished-c")
        defer { a.remove(); c.remove() }
        let root = a.dir.deletingLastPathComponent()
        let data = try Fixtures.writeData(in: root)
        let pretrain = try write(Fixtures.pretrainConfig(corpus: data.corpus, steps: 20), to: root.appendingPathComponent("pt.json"))
        XCTAssertEqual(try a.moerec(["run", pretrain.path]).status, 0)
        let hash = try XCTUnwrap(try a.runs().first?["hash"] as? String)
        // A shard whose run was still running (its trainer gone): merged as interrupted.
        let shard = try a.copy("merge-unfinished-shard")
        defer { shard.remove() }
        try shard.sqlWrite("UPDATE runs SET status = 'running', finished_at = NULL, steps_done = 10 WHERE hash = '\(hash)'")
        try shard.sqlWrite("DELETE FROM checkpoints WHERE step > 10")
        let first = try c.moerec(["merge", shard.database.path, "--format", "json"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(try summary(first)["runs_unfinished"] as? Int, 1, first.stdout)
        XCTAssertEqual(try c.statuses()[hash], "interrupted")
        // The completed run replaces it.
        let second = try c.moerec(["merge", a.database.path, "--format", "json"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(try summary(second)["runs_replaced"] as? Int, 1, second.stdout)
        XCTAssertEqual(try c.statuses()[hash], "completed")
        XCTAssertEqual(try c.sql("SELECT count(*) FROM metrics"), try a.sql("SELECT count(*) FROM metrics"))
        XCTAssertEqual(try c.moerec(["verify"]).status, 0)
        // Bad input writes nothing.
        let missing = try StoreUnderTest.fresh("merge-none").moerec(["merge", "/nonexistent/moerec.sqlite"])
        XCTAssertEqual(missing.status, 2, missing.stderr)
    }
}
