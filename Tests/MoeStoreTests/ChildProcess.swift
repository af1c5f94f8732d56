import Foundation
import MoeStore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Separate processes for the concurrency and interruption tests: the test binary runs
/// itself (`/proc/self/exe`) with a filter selecting `WorkerEntry.testWorkerEntryPoint`
/// and environment variables telling that test what to do. A child is a real process with
/// its own SQLite connection, locks and pid, and it can be SIGKILLed.
enum ChildProcess {
    static let entryPoint = "MoeStoreTests.WorkerEntry/testWorkerEntryPoint"

    /// The running test binary, or nil where there is no /proc (children unsupported).
    static var testBinary: String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    }

    /// Starts a worker; its stdout and stderr go to `<logDirectory>/<name>.log`.
    static func spawn(_ name: String, environment: [String: String], logDirectory: String) throws -> (Process, String) {
        guard let binary = testBinary else { throw XCTSkip("no /proc/self/exe: child processes need Linux") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [entryPoint]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let log = (logDirectory as NSString).appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return (process, log)
    }

    /// Waits for `process`, killing it after `timeout` seconds; returns its exit status
    /// (or -signal when killed by one).
    static func wait(_ process: Process, timeout: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return -999
        }
        process.waitUntilExit()
        return process.terminationReason == .uncaughtSignal ? -process.terminationStatus : process.terminationStatus
    }
}

/// Runs a command quietly; false when it cannot start or fails (e.g. mount without privileges).
func runCommand(_ path: String, _ arguments: [String]) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}

/// The body of every child process. In a normal test run it has nothing to do and skips.
final class WorkerEntry: XCTestCase {
    func testWorkerEntryPoint() throws {
        let env = ProcessInfo.processInfo.environment
        guard let mode = env["MOESTORE_WORKER"], let path = env["MOESTORE_STORE"] else {
            throw XCTSkip("worker entry point: does work only when started by a concurrency or interruption test")
        }
        switch mode {
        case "metrics":
            try writeMetrics(path: path, index: Int(env["MOESTORE_INDEX"]!)!, points: Int(env["MOESTORE_POINTS"]!)!,
                             batchSize: Int(env["MOESTORE_BATCH"]!)!)
        case "lease":
            let store = try Store(path: path)
            try store.markRunning(hash: env["MOESTORE_HASH"]!, environment: RunEnvironment(host: "child"))
            // Hold the lease until the parent kills this process.
            sleep(120)
            XCTFail("the parent should have killed this worker")
        default:
            XCTFail("unknown worker mode \(mode)")
        }
    }

    /// One trainer: creates its run, writes `points` metric points in batches, writes the
    /// first tenth again (as a resumed run would) and completes the run.
    private func writeMetrics(path: String, index: Int, points: Int, batchSize: Int) throws {
        let store = try Store(path: path)
        let (run, _) = try store.insertRunIfAbsent(kind: .pretrain, config: ConcurrencyTests.config(index), parentHash: nil,
                                                   datasetFingerprint: fingerprint, numericsVersion: 1)
        try store.markRunning(hash: run.hash, environment: RunEnvironment(host: "worker-\(index)"))
        let writer = try store.metricWriter(runHash: run.hash, batchSize: batchSize)
        for i in 0..<points {
            let (step, split, name) = ConcurrencyTests.point(i)
            try writer.add(step: step, split: split, name: name, value: ConcurrencyTests.value(index: index, point: i))
        }
        for i in 0..<(points / 10) {
            let (step, split, name) = ConcurrencyTests.point(i)
            try writer.add(step: step, split: split, name: name, value: ConcurrencyTests.value(index: index, point: i))
        }
        try writer.flush()
        try store.markCompleted(hash: run.hash, wallSeconds: 1, steps: points / 8)
    }
}
