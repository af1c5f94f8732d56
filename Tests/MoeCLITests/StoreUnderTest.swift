import Foundation
import MoeTestSupport
import XCTest

/// One store directory used by a test: `moerec.sqlite` with `objects/` and `locks/` beside it.
/// Every command goes through the built binary with `--store` pointing here.
struct StoreUnderTest {
    let dir: URL

    var database: URL { dir.appendingPathComponent("moerec.sqlite") }
    var objects: URL { dir.appendingPathComponent("objects") }

    static func fresh(_ label: String) -> StoreUnderTest {
        StoreUnderTest(dir: TestSupport.temporaryDirectory(label).appendingPathComponent("store"))
    }

    /// `moerec args… --store DIR/moerec.sqlite`, to completion.
    @discardableResult
    func moerec(_ args: [String], timeout: TimeInterval = 300) throws -> CLI.Result {
        try CLI.run(args + ["--store", database.path], timeout: timeout)
    }

    /// The same, left running (for tests that interrupt it).
    func start(_ args: [String]) throws -> CLI.Running {
        try CLI.start(args + ["--store", database.path])
    }

    /// A copy of the whole store directory (only while no process writes to it). The copy is
    /// opened once, so that a write-ahead log left by a read-only reader of the original is
    /// folded into the database file before a test takes a snapshot of its bytes.
    func copy(_ label: String) throws -> StoreUnderTest {
        let copy = StoreUnderTest(dir: TestSupport.temporaryDirectory(label).appendingPathComponent("store"))
        try FileManager.default.copyItem(at: dir, to: copy.dir)
        let opened = try copy.moerec(["runs"])
        guard opened.status == 0 else { throw TestFailure("the copied store does not open: \(opened.stderr)") }
        return copy
    }

    /// Removes the temporary directory holding the store.
    func remove() { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }

    // MARK: Reading the store directly (as the schema README tells users to)

    /// A read-only query through the system `sqlite3`; rows are `|`-separated lines.
    func sql(_ query: String) throws -> String {
        let (status, out, err) = try SQLite3.run(["-readonly", database.path, query])
        guard status == 0 else { throw TestFailure("sqlite3 \(query): \(err)") }
        return out.trimmingCharacters(in: .newlines)
    }

    /// A write through the system `sqlite3` (to tamper with the store in a test).
    func sqlWrite(_ statement: String) throws {
        let (status, _, err) = try SQLite3.run([database.path, statement])
        guard status == 0 else { throw TestFailure("sqlite3 \(statement): \(err)") }
    }

    /// An integer query result, or nil while the database cannot be read yet.
    func count(_ query: String) -> Int? {
        guard FileManager.default.fileExists(atPath: database.path), let text = try? sql(query) else { return nil }
        return Int(text)
    }

    /// Every metric point of a run except wall-clock timings, values to 17 significant
    /// digits (enough to tell any two doubles apart), in a fixed order.
    func metricSeries(_ hash: String) throws -> String {
        try sql("""
            SELECT step, split, name, printf('%!.17g', value) FROM metric_points
            WHERE run_hash = '\(hash)' AND split <> 'timing' ORDER BY split, name, step
            """)
    }

    /// Every checkpoint manifest of a run (tensor and optimizer object hashes, loader state), by step.
    func checkpointManifests(_ hash: String) throws -> String {
        try sql("""
            SELECT c.step, c.manifest_json FROM checkpoints c JOIN runs r ON r.id = c.run_id
            WHERE r.hash = '\(hash)' ORDER BY c.step
            """)
    }

    /// The lifecycle columns of a run that a retrain would rewrite.
    func lifecycleRow(_ hash: String) throws -> String {
        try sql("SELECT status, started_at, finished_at, wall_seconds, steps_done, pid FROM runs WHERE hash = '\(hash)'")
    }

    /// `moerec runs --format json [--where …]`, decoded.
    func runs(where filter: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        let result = try moerec(["runs", "--format", "json"] + (filter.map { ["--where", $0] } ?? []))
        XCTAssertEqual(result.status, 0, "runs --format json: \(result.stderr)", file: file, line: line)
        let parsed = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        guard let rows = parsed as? [[String: Any]] else {
            XCTFail("runs --format json did not print an array of objects: \(result.stdout)", file: file, line: line)
            return []
        }
        return rows
    }

    /// hash → status, from `moerec runs --format json`.
    func statuses(file: StaticString = #filePath, line: UInt = #line) throws -> [String: String] {
        var out: [String: String] = [:]
        for row in try runs(file: file, line: line) {
            if let hash = row["hash"] as? String, let status = row["status"] as? String { out[hash] = status }
        }
        return out
    }

    /// The `checkpoints` section of `moerec show HASH` (one line per checkpoint, with its digest).
    func shownCheckpoints(_ hash: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String] {
        let result = try moerec(["show", hash])
        XCTAssertEqual(result.status, 0, "show \(hash): \(result.stderr)", file: file, line: line)
        let lines = result.stdout.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "checkpoints") else {
            XCTFail("show printed no checkpoints section:\n\(result.stdout)", file: file, line: line)
            return []
        }
        return lines[(start + 1)...].filter { $0.contains("digest") }
    }

    /// Every file under the store directory with its bytes, except SQLite's `-shm` index
    /// (shared memory that readers may touch): what "the store is byte-unchanged" means.
    func snapshot() throws -> StoreSnapshot {
        var files: [String: Data] = [:]
        let root = dir.standardizedFileURL.path
        guard let walker = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey]) else {
            return StoreSnapshot(files: [:])
        }
        for case let url as URL in walker {
            guard (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true,
                  !url.lastPathComponent.hasSuffix("-shm") else { continue }
            let path = url.standardizedFileURL.path
            let relative = path.hasPrefix(root) ? String(path.dropFirst(root.count)) : path
            files[relative] = try Data(contentsOf: url)
        }
        return StoreSnapshot(files: files)
    }
}

/// The bytes of every file of a store directory.
struct StoreSnapshot {
    let files: [String: Data]

    /// Files added, removed or changed since `earlier` (empty: byte-identical).
    func changes(since earlier: StoreSnapshot) -> [String] {
        var out: [String] = []
        for (path, data) in files.sorted(by: { $0.key < $1.key }) {
            if let before = earlier.files[path] {
                if before != data { out.append("changed \(path)") }
            } else {
                out.append("added \(path)")
            }
        }
        for path in earlier.files.keys.sorted() where files[path] == nil { out.append("removed \(path)") }
        return out
    }
}

/// A test precondition that did not hold (a fixture run failed, sqlite3 failed).
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The system `sqlite3` command-line shell.
enum SQLite3 {
    static func run(_ args: [String]) throws -> (Int32, String, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        process.arguments = ["-batch", "-bail"] + args
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read before waiting so that a large result cannot block the child on a full pipe.
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }
}

enum Poll {
    /// Checks `condition` every `interval` seconds until it holds (true) or `timeout` passes (false).
    static func until(timeout: TimeInterval, interval: TimeInterval = 0.05, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            usleep(useconds_t(interval * 1_000_000))
        }
        return try condition()
    }
}

enum Output {
    /// The run hash `moerec run` prints first on stdout ("HASH  completed", "HASH  cache hit …").
    static func runHash(_ stdout: String) -> String? {
        guard let first = stdout.split(separator: "\n").first?.split(separator: " ").first else { return nil }
        let hash = String(first)
        return isFullHash(hash) ? hash : nil
    }

    static func isFullHash(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// Progress lines of a run ("<prefix> step n/N loss …") in a command's stderr: a run that
    /// trains prints at least its last step; a cache hit prints none.
    static func trainedSteps(of hash: String, in stderr: String) -> [String] {
        stderr.components(separatedBy: "\n").filter { $0.hasPrefix("\(hash.prefix(12)) step ") }
    }
}

/// Writes a text file, creating its directory.
func write(_ text: String, to url: URL) throws -> URL {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url
}
