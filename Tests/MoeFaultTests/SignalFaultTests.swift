import Foundation
import MoeTestSupport
import XCTest

/// Signals, hangs and paths that are not files. SIGINT and SIGTERM stop every long
/// command within about a second with exit 130 / 143, leave the run `interrupted` (and
/// resumable) and remove scratch files; an interrupted sweep leaves no half-registered
/// cells; a run that fails outside its step loop is `failed` with the reason; a store path
/// that is not a regular file is refused before SQLite creates anything beside it.
final class SignalFaultTests: FaultTestCase {
    override class var category: FaultCategory { .killResume }

    /// Starts `moerec args`, waits until `ready` holds (polled), sends `signal`, and returns
    /// the outcome with the seconds from the signal to the exit.
    func interrupt(_ args: [String], signal: Int32, environment: [String: String] = [:], timeout: TimeInterval = 120,
                   ready: () throws -> Bool) throws -> (Outcome, Double?) {
        let start = Date()
        let running = try CLI.start(args, environment: environment)
        var sentAt: Date?
        while running.process.isRunning && Date().timeIntervalSince(start) < timeout {
            if try ready() {
                kill(running.pid, signal)
                sentAt = Date()
                break
            }
            usleep(20_000)
        }
        let result = try running.wait(timeout: 60)
        let stopped = sentAt.map { Date().timeIntervalSince($0) }
        let outcome = Outcome(args: args, status: result.status, signaled: running.process.terminationReason == .uncaughtSignal,
                              stdout: result.stdout, stderr: result.stderr, seconds: Date().timeIntervalSince(start))
        return (outcome, stopped)
    }

    /// The signals every long command handles, with the exit code each gives.
    static let signals: [(Int32, Int32, String)] = [(SIGINT, 130, "SIGINT"), (SIGTERM, 143, "SIGTERM")]

    /// A clean exit with `code` (not death by the signal), within about a second.
    func expectStopped(_ check: CaseCheck, _ out: Outcome, after seconds: Double, code: Int32, _ name: String) {
        check.expect(!out.signaled && out.status == code, "\(out.exitDescription), expected exit \(code): \(out.headline)")
        check.expect(seconds < 3, "took \(String(format: "%.1f", seconds)) s to stop after \(name)")
    }

    func freshStore(_ label: String) -> (dir: URL, db: String) {
        let dir = FaultFixtures.directory(label)
        return (dir, dir.appendingPathComponent("moerec.sqlite").path)
    }

    /// One case per signal, each on a fresh store (directory, database path).
    func forEachSignal(_ label: String, _ title: (_ name: String, _ code: Int32) -> String,
                       _ body: (CaseCheck, _ signal: Int32, _ code: Int32, _ name: String, URL, String) throws -> Void) throws {
        _ = try SQL.requireBinary()
        for (signal, code, name) in Self.signals {
            runCase(.killResume, title(name, code)) { check in
                let (dir, db) = freshStore(label)
                try body(check, signal, code, name, dir, db)
            }
        }
    }

    func testRunStopsOnSIGINTAndSIGTERM() throws {
        try forEachSignal("sig-run", { "run: \($0) stops training, exit \($1), run interrupted and resumable" }) {
            check, signal, code, name, dir, db in
            let config = try FaultFixtures.pretrainConfig(in: dir, steps: 4000)
            let (out, stopped) = try interrupt(["run", config.path, "--store", db, "--set", "checkpoint_interval=50"],
                                               signal: signal) {
                FileManager.default.fileExists(atPath: db) && (try? StoreState.hashes(db, status: "running").count) == 1
            }
            guard let stopped else { return check.fail("the run never reached running: \(out)") }
            expectStopped(check, out, after: stopped, code: code, name)
            check.expect(out.stdout.contains("interrupted"), "stdout does not say interrupted: \(out.stdout.prefix(200))")
            let hashes = try StoreState.hashes(db, status: "interrupted")
            check.expect(hashes.count == 1, "interrupted runs: \(hashes.count)")
            check.note("stopped \(String(format: "%.2f", stopped)) s after \(name)")
        }
    }

    func testReproduceStopsAndRemovesItsScratch() throws {
        try forEachSignal("sig-repro", { "reproduce: \($0) stops it, exit \($1), scratch directory removed" }) {
            check, signal, code, name, dir, db in
            let config = try FaultFixtures.pretrainConfig(in: dir, steps: 2000)
            let first = try Moerec.run(["run", config.path, "--store", db, "--set", "checkpoint_interval=2000",
                                        "--set", "eval_interval=1000"])
            guard first.status == 0, let hash = FaultFixtures.firstHash(first.stdout) else { return check.fail("setup run: \(first)") }
            let tmp = dir.appendingPathComponent("tmp")
            try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
            let scratchFiles = { (try? FileManager.default.contentsOfDirectory(atPath: tmp.path)) ?? [] }
            let before = try StoreState.runs(db, hashes: [hash])
            let (out, stopped) = try interrupt(["reproduce", String(hash.prefix(12)), "--store", db], signal: signal,
                                               environment: ["TMPDIR": tmp.path]) {
                // The re-execution is under way once its scratch store holds the run as running.
                guard let scratch = scratchFiles().first(where: { $0.hasPrefix("moerec-reproduce-") }) else { return false }
                let path = tmp.appendingPathComponent(scratch).appendingPathComponent("moerec.sqlite").path
                return FileManager.default.fileExists(atPath: path) && (try? StoreState.hashes(path, status: "running").count) == 1
            }
            guard let stopped else { return check.fail("the re-execution never started: \(out)") }
            expectStopped(check, out, after: stopped, code: code, name)
            check.expect(!out.stdout.contains("bit-identical"), "reported a result although interrupted: \(out.stdout.prefix(200))")
            let left = scratchFiles().filter { $0.hasPrefix("moerec-reproduce-") }
            check.expect(left.isEmpty, "scratch left behind: \(left)")
            check.expect(try StoreState.runs(db, hashes: [hash]) == before, "the reproduced run changed")
        }
    }

    /// A grid large enough that planning takes seconds; SIGTERM lands while it plans.
    func testSweepInterruptedWhilePlanningRegistersNothing() throws {
        try forEachSignal("sig-sweep", { name, _ in "sweep: \(name) while planning 20000 cells leaves no queued cell and no sweep" }) {
            check, signal, code, name, dir, db in
            let config = try FaultFixtures.pretrainConfig(in: dir, steps: 10)
            let seeds = (0..<5000).map(String.init).joined(separator: ",")
            let args = ["sweep", config.path, "--grid", "seed=\(seeds)", "--grid", "lr=0.001,0.002,0.003,0.004", "--store", db]
            var opened: Date?
            let (out, stopped) = try interrupt(args, signal: signal) {
                // Planning starts once the store is open; land the signal inside it.
                if opened == nil, FileManager.default.fileExists(atPath: db) { opened = Date() }
                return opened.map { Date().timeIntervalSince($0) > 0.5 } ?? false
            }
            guard let stopped else { return check.fail("the sweep ended before the signal: \(out)") }
            expectStopped(check, out, after: stopped, code: code, name)
            if out.stderr.contains("cells registered") {
                check.note("the signal landed after registration; nothing to check about half-registered cells")
            } else {
                check.expect(try SQL.int(db, "SELECT count(*) FROM runs WHERE status = 'queued'") == 0, "queued runs were left behind")
                check.expect(try SQL.int(db, "SELECT count(*) FROM sweeps") == 0, "a sweep row was left behind")
            }
        }
    }

    func testSweepPlanningScales() throws {
        runCase(.killResume, "sweep: 20000 cells are planned and registered in one go, quickly") { check in
            let (dir, db) = freshStore("plan-scale")
            let config = try FaultFixtures.pretrainConfig(in: dir, steps: 10)
            let seeds = (0..<5000).map(String.init).joined(separator: ",")
            let args = ["sweep", config.path, "--grid", "seed=\(seeds)", "--grid", "lr=0.001,0.002,0.003,0.004", "--store", db]
            let started = Date()
            var registeredAfter: Double?
            let (out, _) = try interrupt(args, signal: SIGTERM, timeout: 300) {
                guard (try? SQL.int(db, "SELECT count(*) FROM sweeps")) == 1 else { return false }
                registeredAfter = Date().timeIntervalSince(started)
                return true
            }
            guard let registeredAfter else { return check.fail("never registered: \(out)") }
            check.note("20000 cells registered after \(String(format: "%.1f", registeredAfter)) s")
            check.expect(registeredAfter < 60, "planning 20000 cells took \(String(format: "%.1f", registeredAfter)) s")
            let queued = try SQL.int(db, "SELECT count(*) FROM sweep_members")
            check.expect(queued == 20000, "sweep members: \(queued), expected 20000")
        }
    }
}

/// A run that fails for a reason outside training, and store paths that are not files.
final class EnvironmentFaultTests: FaultTestCase {
    override class var category: FaultCategory { .storeFaults }

    func testRunThatCannotWriteObjectsIsFailedThenRetried() throws {
        _ = try SQL.requireBinary()
        runCase(.storeFaults, "objects directory cannot be created: run failed with the reason, then retried") { check in
            let dir = FaultFixtures.directory("no-objects")
            let db = dir.appendingPathComponent("moerec.sqlite").path
            let objects = dir.appendingPathComponent("objects")
            try Files.write("a file where the objects directory should be\n", to: objects)
            let config = try FaultFixtures.pretrainConfig(in: dir, name: "cfg.json", steps: 20)
            let out = try Moerec.run(["run", config.path, "--store", db])
            check.expect(out.status == 1 && !out.crashed, "\(out.exitDescription), expected exit 1: \(out.headline)")
            let rows = try SQL.lines(db, "SELECT status || '|' || coalesce(failure_reason, '') FROM runs")
            check.expect(rows.count == 1 && rows[0].hasPrefix("failed|") && rows[0].contains("objects"),
                         "the run row: \(rows)")
            try FileManager.default.removeItem(at: objects)
            let again = try Moerec.run(["run", config.path, "--store", db])
            check.expect(again.status == 0 && again.stdout.contains("completed"), "re-running once the directory can be made: \(again)")
        }
    }

    func testStorePathThatIsNotARegularFile() throws {
        let dir = FaultFixtures.directory("special-store")
        let fifo = dir.appendingPathComponent("fifo.sqlite").path
        mkfifo(fifo, 0o600)
        for path in ["/dev/null", "/dev/zero", fifo] {
            runCase(.storeFaults, "store path \(path) is refused with exit 2, nothing created beside it") { check in
                for args in [["runs"], ["report", "--table", "regimes"], ["verify"]] {
                    let out = try Moerec.run(args + ["--store", path], timeout: 30)
                    check.expect(out.status == 2 && !out.crashed, "\(args[0]): \(out.exitDescription), expected exit 2: \(out.headline)")
                    check.expect(out.stderr.contains(path) && out.stderr.contains("not a regular file"), "\(args[0]): \(out.headline)")
                }
                for suffix in ["-journal", "-wal", "-shm"] {
                    check.expect(!FileManager.default.fileExists(atPath: path + suffix), "\(path + suffix) was created")
                }
            }
        }
    }
}
