import Foundation
import MoeJSON
import MoeStore
import XCTest

final class ConcurrencyTests: XCTestCase {
    // The shape of what each worker writes, shared with WorkerEntry.
    static func config(_ index: Int) -> JSONValue { sampleConfig(seed: 1000 + index) }

    static let series = [("train", "loss"), ("train", "acc"), ("val", "loss"), ("val", "acc"),
                         ("train", "aux_loss"), ("train", "z_loss"), ("train", "router_entropy"), ("train", "dropped_frac")]

    static func point(_ i: Int) -> (step: Int, split: String, name: String) {
        let (split, name) = series[i % series.count]
        return (i / series.count, split, name)
    }

    static func value(index: Int, point i: Int) -> Double { Double(index) * 1_000_000 + Double(i) }

    func testFourProcessesWriteOneStoreConcurrently() throws {
        let dir = TemporaryDirectory("concurrent")
        // The store does not exist yet: the workers also race to create and migrate it.
        let path = dir.file("shared/moerec.sqlite")
        let workers = 4
        let points = 40_000
        var children: [(Process, String)] = []
        // If this test stops early, stop the workers too, before the directory is removed.
        defer { for (process, _) in children where process.isRunning { process.terminate(); process.waitUntilExit() } }
        for index in 0..<workers {
            children.append(try ChildProcess.spawn("worker-\(index)", environment: [
                "MOESTORE_WORKER": "metrics", "MOESTORE_STORE": path, "MOESTORE_INDEX": String(index),
                // Small batches: many short transactions, so writers contend for the lock.
                "MOESTORE_POINTS": String(points), "MOESTORE_BATCH": "400",
            ], logDirectory: dir.path))
        }

        // Meanwhile this process reads, as `moerec runs` and reports would.
        var reads = 0
        while children.contains(where: { $0.0.isRunning }) {
            if FileManager.default.fileExists(atPath: path) {
                let reader = try Store(path: path)
                _ = try reader.listRuns()
                _ = try count(reader, "SELECT count(*) FROM metrics")
                reads += 1
            }
            usleep(20_000)
        }

        for (index, (process, log)) in children.enumerated() {
            let status = ChildProcess.wait(process, timeout: 300)
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            XCTAssertEqual(status, 0, "worker \(index) failed:\n\(output.suffix(3000))")
            XCTAssertFalse(output.contains("database is locked"), "worker \(index): \(output.suffix(3000))")
        }
        XCTAssertGreaterThan(reads, 0, "the reader ran alongside the writers")

        let store = try Store(path: path)
        XCTAssertEqual(try store.migrationRecords().map(\.version), Migrations.all.map(\.version), "migrated exactly once")
        XCTAssertEqual(try count(store, "SELECT count(*) FROM runs"), workers)
        for index in 0..<workers {
            let hash = try RunIdentity.hash(config: ConcurrencyTests.config(index), parent: nil, datasetFingerprint: fingerprint, numerics: 1)
            XCTAssertEqual(try store.run(hash: hash)?.status, .completed)
            XCTAssertEqual(try store.run(hash: hash)?.environment.host, "worker-\(index)")
            let stored = try store.allMetrics(runHash: hash)
            XCTAssertEqual(stored.count, points, "worker \(index): every point exactly once")
            var expected: [String: Double] = [:]
            for i in 0..<points {
                let (step, split, name) = ConcurrencyTests.point(i)
                expected["\(step)/\(split)/\(name)"] = ConcurrencyTests.value(index: index, point: i)
            }
            var mismatches = 0
            for point in stored where expected.removeValue(forKey: "\(point.step)/\(point.split)/\(point.name)") != point.value {
                mismatches += 1
            }
            XCTAssertEqual(mismatches, 0, "worker \(index): stored values differ from what was written")
            XCTAssertTrue(expected.isEmpty, "worker \(index): \(expected.count) points missing")
        }
    }
}
