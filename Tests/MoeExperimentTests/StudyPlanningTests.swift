import XCTest
import MoeExperiment
import MoeJSON
import MoeStore
import MoeTestSupport
import MoeTrain

final class StudyPlanningTests: XCTestCase {
    func testParallelMapKeepsOrderAndRethrowsTheLowestFailingIndex() throws {
        struct Failure: Error, Equatable { let index: Int }
        let squares = try parallelMap(10_000, workers: 4, stop: StopFlag()) { $0 * $0 }
        XCTAssertEqual(squares, (0..<10_000).map { $0 * $0 })
        XCTAssertThrowsError(try parallelMap(10_000, workers: 4, stop: StopFlag()) { i -> Int in
            if i == 7_001 || i == 9_999 || i == 4_321 { throw Failure(index: i) }
            return i
        }) { XCTAssertEqual($0 as? Failure, Failure(index: 4_321)) }
        let stop = StopFlag()
        stop.raise(signal: SIGTERM)
        XCTAssertThrowsError(try parallelMap(100, workers: 2, stop: stop) { $0 }) {
            XCTAssertEqual(($0 as? Interrupted)?.signal, SIGTERM)
        }
    }

    /// Cells planned in parallel come out in grid order with the hashes one-at-a-time
    /// planning gives, and are registered as one sweep whose members are exactly they.
    func testParallelPlanningMatchesSerialPlanningCellByCell() throws {
        let dir = TestSupport.temporaryDirectory("study-plan")
        let corpus = dir.appendingPathComponent("corpus.jsonl")
        try (0..<50).map { "{\"text\": \"line \($0) of a small corpus\"}\n" }.joined().write(to: corpus, atomically: true, encoding: .utf8)
        let base: [String: JSONValue] = ["kind": "pretrain", "corpus": .string(corpus.path), "context": 16, "d_model": 16,
                                         "layers": 1, "heads": 2, "d_ff": 32, "experts": 2, "top_k": 1, "steps": 2]
        // One invalid value (heads must divide d_model) among valid ones: skipped, not fatal.
        let study = Study(name: "plan", base: base, parent: nil,
                          grid: [("seed", (0..<300).map { .int(Int64($0)) }), ("heads", [2, 3, 4])], tables: [])
        let store = try Store(path: dir.appendingPathComponent("moerec.sqlite").path)
        let executor = try Executor(store: store, threads: 1)
        executor.log = { _ in }
        let checked = try StudyExecutor.check(study, stop: StopFlag())
        XCTAssertEqual(checked.cells.count, 900)
        XCTAssertEqual(checked.invalid.count, 300)
        let studyExecutor = StudyExecutor(study: study, executor: executor)
        studyExecutor.log = { _ in }
        let prepared = try studyExecutor.prepare(checked, launcher: nil)
        XCTAssertEqual(prepared.skipped, 300)
        let serial = try checked.valid.map { try executor.plan($0.config, explicit: $0.explicit) }
        XCTAssertEqual(prepared.pending.map(\.plan.hash), serial.map(\.hash))
        XCTAssertEqual(prepared.pending.map(\.label), checked.valid.map(\.label))
        XCTAssertEqual(Set(try store.runs(RunSelection(filter: try WhereFilter(runs: "sweep=\(prepared.sweepIds[0])"))).map(\.hash)),
                       Set(serial.map(\.hash)))
        XCTAssertEqual(studyExecutor.phases.map(\.name), ["parents", "plan", "register", "completed"])
    }
}
