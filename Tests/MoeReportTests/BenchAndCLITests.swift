import Foundation
import MoeJSON
import MoeReport
import MoeStore
import XCTest

final class ReportBenchmarkTests: XCTestCase {
    func testSyntheticStoreHoldsExactlyTheRequestedRunsAndPointsAndIsReused() throws {
        let scratch = try ScratchStore("bench")
        let path = (scratch.directory as NSString).appendingPathComponent("bench.sqlite")
        let runs = 45, points = 45 * 700 + 7
        XCTAssertFalse(try ReportBenchmark.prepareStore(path: path, runs: runs, points: points))
        XCTAssertTrue(try ReportBenchmark.prepareStore(path: path, runs: runs, points: points), "second call reuses the store")
        let store = try Store(path: path)
        XCTAssertEqual(try ReportBenchmark.completedRuns(store: store, runs: runs, points: points), runs)
        var stored = 0
        try store.query("SELECT count(*) FROM metrics") { stored = Int($0.int(0)!) }
        XCTAssertEqual(stored, points)

        let set = try Reports.build(store: store, tables: ReportTable.allCases, filter: nil)
        // 38 grid cells; 45 runs = one full seed plus 7 cells of a second one.
        XCTAssertEqual(set.regimes?.rows.count, 38)
        XCTAssertEqual(set.regimes?.rows.filter(\.complete).count, 7)
        XCTAssertTrue(set.overfit!.rows.allSatisfy { !$0.curve.isEmpty })
        let timed = try ReportBenchmark.measure(store: store, table: .regimes, format: .md)
        XCTAssertEqual(timed.rows, 38)
        XCTAssertGreaterThan(timed.bytes, 1000)
    }

    func testTooFewPointsPerRunIsRefused() throws {
        let scratch = try ScratchStore("bench-small")
        XCTAssertThrowsError(try ReportBenchmark.prepareStore(path: scratch.path, runs: 10, points: 100))
    }
}

/// The `moerec report` command, run as a user would.
final class ReportCLITests: XCTestCase {
    struct Result { var status: Int32; var stdout: String; var stderr: String }

    static var binary: String? {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["MOEREC_BIN"] { candidates.append(env) }
        let bundle = Bundle.main.bundleURL
        candidates += [bundle.appendingPathComponent("moerec").path,
                       bundle.deletingLastPathComponent().appendingPathComponent("moerec").path]
        for test in Bundle.allBundles where test.bundlePath.hasSuffix(".xctest") {
            candidates.append(test.bundleURL.deletingLastPathComponent().appendingPathComponent("moerec").path)
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func run(_ args: [String], in directory: String? = nil) throws -> Result {
        let binary = try XCTUnwrap(ReportCLITests.binary, "build the moerec binary first (swift build -c release --build-tests)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = args
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let tmp = FileManager.default.temporaryDirectory
        let outURL = tmp.appendingPathComponent("report-cli-\(UUID().uuidString).out")
        let errURL = tmp.appendingPathComponent("report-cli-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        try process.run()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: try String(contentsOf: outURL, encoding: .utf8),
                      stderr: try String(contentsOf: errURL, encoding: .utf8))
    }

    func testReportPrintsEachFormatAndRejectsUnknownNames() throws {
        let scratch = try ScratchStore("cli")
        let parent = try scratch.pretrain(experts: 4)
        for regime in ["all", "moe"] {
            for seed in 0..<2 {
                try scratch.finetune(parent: parent, regime: regime, experts: 4, seed: seed, curve: peakedCurve(best: 0.5 + 0.01 * Double(seed)))
            }
        }
        let md = try run(["report", "--store", scratch.path, "--table", "regimes"])
        XCTAssertEqual(md.status, 0, md.stderr)
        XCTAssertTrue(md.stdout.hasPrefix("## Regimes"), md.stdout)
        XCTAssertTrue(md.stdout.contains("| wn-supersense | 256 | 4 | moe | 2/2 |"), md.stdout)

        let csv = try run(["report", "--store", scratch.path, "--table", "regimes,claims", "--format", "csv", "--where", "regime=moe or regime=all"])
        XCTAssertEqual(csv.status, 0, csv.stderr)
        XCTAssertTrue(csv.stdout.hasPrefix("table,row,task,train_size"), csv.stdout)
        XCTAssertTrue(csv.stdout.contains("\ntable,id,claim"), csv.stdout)

        let json = try run(["report", "--store", scratch.path, "--table", "overfit", "--format", "json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        XCTAssertEqual(try JSONValue(parsing: json.stdout)["tables"]?["overfit"]?["rows"]?.arrayValue?.count, 2)

        let badTable = try run(["report", "--store", scratch.path, "--table", "regimes,bogus"])
        XCTAssertEqual(badTable.status, 2)
        XCTAssertTrue(badTable.stderr.contains("bogus"), badTable.stderr)
        let badFormat = try run(["report", "--store", scratch.path, "--format", "xml"])
        XCTAssertEqual(badFormat.status, 2)
        XCTAssertTrue(badFormat.stderr.contains("xml"), badFormat.stderr)
        let badWhere = try run(["report", "--store", scratch.path, "--where", "regime=="])
        XCTAssertEqual(badWhere.status, 2, badWhere.stderr)
    }

    func testOutWritesEveryFormatAndStdoutStillCarriesTheReport() throws {
        let scratch = try ScratchStore("cli-out")
        let parent = try scratch.pretrain(experts: 4)
        try scratch.finetune(parent: parent, regime: "all", experts: 4, seed: 0, curve: peakedCurve(best: 0.5))
        let work = (scratch.directory as NSString).appendingPathComponent("work")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)

        // --out without a value writes into reports/ of the working directory.
        let result = try run(["report", "--store", scratch.path, "--table", "regimes", "--out", "--format", "json"], in: work)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertNotNil(try? JSONValue(parsing: result.stdout))
        let files = try FileManager.default.contentsOfDirectory(atPath: (work as NSString).appendingPathComponent("reports"))
        XCTAssertEqual(Set(files), ["regimes.md", "regimes.csv", "regimes.json", "report.html"])

        let explicit = (scratch.directory as NSString).appendingPathComponent("elsewhere")
        let second = try run(["report", "--store", scratch.path, "--out", explicit])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("## Claims"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: explicit).count, 13)
    }
}
