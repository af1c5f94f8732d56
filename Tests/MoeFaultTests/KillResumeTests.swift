import Foundation
import MoeTestSupport
import XCTest

/// Category 1: SIGKILL at points spread over a training run's life, then the same command
/// again. After each kill: the store opens, the runs completed before are unchanged, the
/// killed run reads `interrupted`; after the resume: the run is bit-identical to an
/// uninterrupted one (every metric point outside `timing`, every checkpoint manifest, the
/// parameter digests `moerec show` prints), the database passes `PRAGMA integrity_check`
/// and `moerec verify` finds every object intact.
final class KillResumeFaultTests: FaultTestCase {
    override class var category: FaultCategory { .killResume }

    /// Where in the run's life a kill lands. Conditions are polled on the store (sqlite3)
    /// and the object directory while the trainer runs.
    enum Trigger: CustomStringConvertible {
        /// The run row says `running` (the trainer has its lease).
        case running
        /// Metric points up to `step` are committed (the evaluation flush at that step).
        case metricStep(Int)
        /// At least `n` checkpoints are recorded.
        case checkpoints(Int)
        /// An object is being written (a `.tmp-` file exists) while exactly `n`
        /// checkpoints are recorded: the kill lands inside checkpoint n + 1.
        case writingCheckpoint(after: Int)
        /// A fraction of the uninterrupted run's wall time after the start.
        case elapsed(Double)

        var description: String {
            switch self {
            case .running: return "as soon as the run is running"
            case let .metricStep(s): return "after the metric flush of step \(s)"
            case let .checkpoints(n): return "after checkpoint #\(n) is recorded"
            case let .writingCheckpoint(n): return "while checkpoint #\(n + 1) is being written"
            case let .elapsed(f): return "at \(Int(f * 100))% of the uninterrupted wall time"
            }
        }
    }

    struct KillPoint {
        let trigger: Trigger
        /// Extra wait after the trigger fires (varies where between steps the kill lands).
        let delay: Double
        var name: String { "\(trigger)" + (delay > 0 ? " + \(Int(delay * 1000)) ms" : "") }
    }

    /// One uninterrupted execution of a command: what every resumed run must equal.
    struct Reference {
        let hash: String
        let series: [String]
        let manifests: [String]
        let digests: [String]
        let seconds: Double
    }

    /// The run under test: 50 steps, evaluation (and metric flush) every 5, a checkpoint
    /// every 10 — five checkpoints and ten flushes to aim at.
    static let steps = 50
    static let extraArgs = ["--set", "eval_interval=5", "--set", "checkpoint_interval=10"]

    static var ciKillPoints: [KillPoint] {
        [
            KillPoint(trigger: .running, delay: 0),
            KillPoint(trigger: .metricStep(5), delay: 0),
            KillPoint(trigger: .writingCheckpoint(after: 0), delay: 0),
            KillPoint(trigger: .checkpoints(1), delay: 0),
            KillPoint(trigger: .metricStep(15), delay: 0.004),
            KillPoint(trigger: .writingCheckpoint(after: 1), delay: 0.02),
            KillPoint(trigger: .checkpoints(2), delay: 0.03),
            KillPoint(trigger: .elapsed(0.55), delay: 0),
            KillPoint(trigger: .metricStep(35), delay: 0.01),
            KillPoint(trigger: .metricStep(50), delay: 0),
        ]
    }

    static var fullKillPoints: [KillPoint] {
        var points = ciKillPoints
        for s in stride(from: 10, through: 45, by: 5) where ![15, 35].contains(s) {
            points.append(KillPoint(trigger: .metricStep(s), delay: 0.002 * Double(s % 3)))
        }
        for n in 2...4 { points.append(KillPoint(trigger: .writingCheckpoint(after: n), delay: 0.01 * Double(n))) }
        for n in 3...4 { points.append(KillPoint(trigger: .checkpoints(n), delay: 0)) }
        for f in [0.2, 0.35, 0.7, 0.85, 0.95] { points.append(KillPoint(trigger: .elapsed(f), delay: 0)) }
        return points
    }

    private var bitIdentical = 0
    private var tried = 0
    private var corruption: [String] = []

    // MARK: Tests

    func testKillPretrainingAtManyPointsAndResume() throws {
        _ = try SQL.requireBinary()
        let base = try FaultFixtures.baseStore()
        let work = FaultFixtures.directory("kill")
        let config = try FaultFixtures.pretrainConfig(in: work, name: "kill.json", steps: Self.steps)
        let command = ["run", config.path] + Self.extraArgs
        let reference = try makeReference(command: command, base: base, label: "pretrain")
        let points = FaultSuite.full ? Self.fullKillPoints : Self.ciKillPoints
        for (i, point) in points.enumerated() {
            runCase(.killResume, "pretrain kill #\(i + 1) \(point.name)") { check in
                try killAndResume(command: command, reference: reference, base: base, kills: [point], check: check)
            }
        }
        if FaultSuite.full {
            runCase(.killResume, "pretrain killed twice (after checkpoint #1, then while writing #4)") { check in
                try killAndResume(command: command, reference: reference, base: base,
                                  kills: [KillPoint(trigger: .checkpoints(1), delay: 0),
                                          KillPoint(trigger: .writingCheckpoint(after: 3), delay: 0)], check: check)
            }
            runCase(.killResume, "resumed run passes `moerec reproduce`") { check in
                try killAndResume(command: command, reference: reference, base: base,
                                  kills: [KillPoint(trigger: .checkpoints(2), delay: 0.01)], check: check, reproduce: true)
            }
        }
        FaultLedger.shared.detail(.killResume, "kills tried: \(tried), resumes bit-identical: \(bitIdentical), "
                                  + "corruption found: \(corruption.isEmpty ? "none" : corruption.joined(separator: "; "))")
    }

    /// Fine-tuning kills (full variant): the resumed run also restores the head and
    /// optimizer state of a run that started from a parent's checkpoint.
    func testKillFineTuningAndResume() throws {
        guard FaultSuite.full else { throw XCTSkip("fine-tuning kills run with MOEREC_FAULT_FULL=1") }
        _ = try SQL.requireBinary()
        let base = try FaultFixtures.baseStore()
        let work = FaultFixtures.directory("kill-ft")
        let config = try FaultFixtures.finetuneConfig(in: work, parent: base.pretrain, name: "kill-ft.json", steps: 40)
        let command = ["run", config.path, "--set", "eval_interval=5", "--set", "checkpoint_interval=10"]
        let reference = try makeReference(command: command, base: base, label: "finetune")
        let points = [KillPoint(trigger: .metricStep(5), delay: 0), KillPoint(trigger: .writingCheckpoint(after: 1), delay: 0),
                      KillPoint(trigger: .checkpoints(2), delay: 0.01), KillPoint(trigger: .metricStep(40), delay: 0)]
        for (i, point) in points.enumerated() {
            runCase(.killResume, "finetune kill #\(i + 1) \(point.name)") { check in
                try killAndResume(command: command, reference: reference, base: base, kills: [point], check: check)
            }
        }
        FaultLedger.shared.detail(.killResume, "fine-tuning kills tried: \(tried), resumes bit-identical: \(bitIdentical)")
    }

    // MARK: Scenario

    /// Runs `command` uninterrupted in a copy of the base store.
    func makeReference(command: [String], base: (dir: URL, pretrain: String, finetune: String), label: String) throws -> Reference {
        let dir = FaultFixtures.directory("ref-\(label)")
        try Files.copyStore(base.dir, to: dir)
        let db = dir.appendingPathComponent("moerec.sqlite").path
        let out = try Moerec.run(command + ["--store", db])
        guard out.status == 0, let hash = FaultFixtures.firstHash(out.stdout) else { throw FaultError("reference run failed: \(out)") }
        let show = try Moerec.run(["show", hash, "--store", db])
        return Reference(hash: hash, series: try StoreState.series(db, hash: hash), manifests: try StoreState.manifests(db, hash: hash),
                         digests: digestLines(show.stdout), seconds: out.seconds)
    }

    /// The `checkpoints` lines of `moerec show` (step, tensor counts, size, digest).
    func digestLines(_ show: String) -> [String] {
        show.split(separator: "\n").map(String.init).filter { $0.hasPrefix("  step ") && $0.contains("digest") }
    }

    /// Copies the base store, starts `command`, kills it at each point in turn (resuming
    /// in between), then resumes to the end and checks everything.
    func killAndResume(command: [String], reference: Reference, base: (dir: URL, pretrain: String, finetune: String),
                       kills: [KillPoint], check: CaseCheck, reproduce: Bool = false) throws {
        let dir = FaultFixtures.directory("case")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Files.copyStore(base.dir, to: dir)
        let db = dir.appendingPathComponent("moerec.sqlite").path
        let objects = dir.appendingPathComponent("objects")
        let args = command + ["--store", db]
        let others = [base.pretrain, base.finetune]
        let before = try StoreState.runs(db, hashes: others)
        let baseObjects = Files.objectCount(objects)
        let hash = reference.hash
        tried += 1

        var lastCheckpointAtKill = 0
        for (k, point) in kills.enumerated() {
            var landed = false
            for attempt in 0..<3 where !landed {
                let running = try CLI.start(args)
                let stepping = attempt > 0 || FaultSuite.alwaysStep
                let fired = waitFor(point, running: running, db: db, hash: hash, objects: objects, reference: reference,
                                    stepping: stepping)
                if fired, point.delay > 0 {
                    if stepping { running.signal(SIGCONT) }
                    usleep(useconds_t(point.delay * 1_000_000))
                }
                running.signal(SIGKILL)
                let result = try running.wait(timeout: 120)
                landed = running.process.terminationReason == .uncaughtSignal && result.status == SIGKILL
                if !landed {
                    check.note("kill \(k + 1) attempt \(attempt + 1) missed: the run ended first (exit \(result.status)); retrying with the trainer single-stepped (SIGSTOP/SIGCONT)")
                    if k > 0 { throw FaultError("kill \(k + 1) missed; the earlier kills' state cannot be rebuilt") }
                    try Files.copyStore(base.dir, to: dir)
                }
            }
            guard landed else {
                check.fail("kill point \(point.name) was never reached before the run finished (3 attempts)")
                return
            }
            // What the kill hit, read straight from the file before moerec touches it.
            let state = (try? SQL.exec(db, """
                SELECT r.status || ' checkpoints=' || (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.id)
                       || ' last_checkpoint=' || coalesce((SELECT max(step) FROM checkpoints c WHERE c.run_id = r.id), 0)
                       || ' metrics_up_to_step=' || coalesce((SELECT max(step) FROM metrics m WHERE m.run_id = r.id), -1)
                  FROM runs r WHERE r.hash = \(SQL.quote(hash))
                """).trimmingCharacters(in: .whitespacesAndNewlines)) ?? "unreadable"
            lastCheckpointAtKill = (try? SQL.int(db, """
                SELECT coalesce(max(c.step), 0) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.hash = \(SQL.quote(hash))
                """)) ?? -1
            check.note("kill \(k + 1) hit: \(state.isEmpty ? "run not yet recorded" : state), objects written \(Files.objectCount(objects) - baseObjects), of them temp files \(Files.temporaryObjects(objects))")

            // The store opens and reports the run interrupted.
            let show = try Moerec.run(["show", String(hash.prefix(12)), "--store", db])
            check.expect(show.status == 0, "after kill \(k + 1) the store does not open for `show`: \(show)")
            check.expect(show.stdout.contains("status interrupted"),
                         "after kill \(k + 1) the run is not shown interrupted: \(show.stdout.split(separator: "\n").prefix(2).joined(separator: " | "))")
            let listed = try Moerec.run(["runs", "--where", "status=interrupted", "--format", "json", "--store", db])
            check.expect(listed.status == 0 && listed.stdout.contains(hash),
                         "after kill \(k + 1) `runs --where status=interrupted` does not list the run: \(listed)")
            let integrity = try StoreState.integrity(db)
            if integrity != "ok" { corruption.append("integrity_check after kill: \(integrity)") }
            check.expect(integrity == "ok", "PRAGMA integrity_check after kill \(k + 1): \(integrity)")
            let othersNow = try StoreState.runs(db, hashes: others)
            if othersNow != before { corruption.append("completed runs changed by a kill") }
            check.expect(othersNow == before, "runs completed before the kill changed (kill \(k + 1))")
            // With several kill points, the next start is a resume that is itself killed.
        }

        // Resume with the very same command.
        let resumed = try Moerec.run(args)
        check.expect(resumed.status == 0 && !resumed.signaled, "resume failed: \(resumed)")
        check.expect(resumed.stdout.contains("\(hash)  completed"), "resume did not complete the run: \(resumed.stdout.prefix(300))")
        if kills.count == 1, lastCheckpointAtKill > 0 {
            check.expect(resumed.stdout.contains("resumed from step \(lastCheckpointAtKill)"),
                         "resume did not start from the last checkpoint (step \(lastCheckpointAtKill)): \(resumed.stdout.prefix(200))")
        }

        // Bit-identity with the uninterrupted run.
        let series = try StoreState.series(db, hash: hash)
        let manifests = try StoreState.manifests(db, hash: hash)
        let show = try Moerec.run(["show", hash, "--store", db])
        let digests = digestLines(show.stdout)
        var identical = true
        if series != reference.series {
            identical = false
            let firstDiff = zip(series, reference.series).first { $0 != $1 }
            check.fail("metric series differ from the uninterrupted run (\(series.count) vs \(reference.series.count) points; first difference: \(firstDiff.map { "resumed '\($0.0)' vs reference '\($0.1)'" } ?? "in length"))")
        }
        if manifests != reference.manifests {
            identical = false
            check.fail("checkpoint manifests differ from the uninterrupted run (\(manifests.count) vs \(reference.manifests.count) checkpoints)")
        }
        if digests != reference.digests || digests.isEmpty {
            identical = false
            check.fail("`moerec show` checkpoint digests differ: \(digests.last ?? "none") vs \(reference.digests.last ?? "none")")
        }
        if identical { bitIdentical += 1 }
        check.note("resumed: \(resumed.stdout.split(separator: "\n").first ?? ""); final \(digests.last?.trimmingCharacters(in: .whitespaces) ?? "no checkpoint")")

        // Nothing else changed, nothing is corrupt.
        check.expect(try StoreState.runs(db, hashes: others) == before, "runs completed before the kill changed after the resume")
        let integrity = try StoreState.integrity(db)
        check.expect(integrity == "ok", "PRAGMA integrity_check after the resume: \(integrity)")
        let verify = try Moerec.run(["verify", "--store", db])
        if verify.status != 0 { corruption.append("verify: \(verify.stdout.suffix(200))") }
        check.expect(verify.status == 0, "`moerec verify` after the resume: \(verify.stdout.suffix(400))")
        let leftovers = Files.temporaryObjects(objects)
        if leftovers > 0 { check.note("object temp files left by the kill (documented as harmless): \(leftovers)") }

        if reproduce {
            let rep = try Moerec.run(["reproduce", String(hash.prefix(12)), "--store", db])
            check.expect(rep.status == 0 && rep.stdout.contains("bit-identical"), "`moerec reproduce` of the resumed run: \(rep)")
        }
    }

    /// Polls until `point` fires; false when the process ended first.
    ///
    /// `stepping` (used after a miss, e.g. on a machine so fast that the run ends between
    /// two polls): the trainer is held with SIGSTOP while each condition is checked and runs
    /// in slices of a few milliseconds in between, so detection latency cannot make the kill
    /// land later than the point. When the point fires the process is left stopped.
    func waitFor(_ point: KillPoint, running: CLI.Running, db: String, hash: String, objects: URL,
                 reference: Reference, stepping: Bool) -> Bool {
        let start = Date()
        let deadline = start.addingTimeInterval(max(120, reference.seconds * 20))
        func poll() -> (status: String, checkpoints: Int, step: Int)? {
            guard let line = try? SQL.exec(db, """
                SELECT r.status, (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.id),
                       coalesce((SELECT max(step) FROM metrics m WHERE m.run_id = r.id), -1)
                  FROM runs r WHERE r.hash = \(SQL.quote(hash))
                """, busyTimeoutMs: 300) else { return nil }
            let parts = line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map(String.init)
            guard parts.count == 3, let c = Int(parts[1]), let s = Int(parts[2]) else { return nil }
            return (parts[0], c, s)
        }
        func fired() -> Bool {
            switch point.trigger {
            case .running:
                return poll()?.status == "running"
            case let .metricStep(step):
                if let p = poll(), p.step >= step { return true }
            case let .checkpoints(n):
                if let p = poll(), p.checkpoints >= n { return true }
            case let .writingCheckpoint(n):
                // A later checkpoint than n + 1 still means "mid-write"; an earlier one does not.
                if Files.temporaryObjects(objects) > 0, let p = poll(), p.checkpoints >= n { return true }
            case let .elapsed(fraction):
                return Date().timeIntervalSince(start) >= fraction * reference.seconds
            }
            return false
        }
        var useStepping = stepping
        if case .elapsed = point.trigger { useStepping = false }
        let pid = running.pid
        while running.process.isRunning && Date() < deadline {
            if useStepping {
                kill(pid, SIGSTOP)
                waitUntilStopped(pid)
                if fired() { return true }
                kill(pid, SIGCONT)
                usleep(2_000)
            } else {
                if fired() { return true }
                if case .writingCheckpoint = point.trigger { usleep(1_000) } else { usleep(5_000) }
            }
        }
        kill(pid, SIGCONT)
        return false
    }

    /// Waits (briefly) until /proc says the process is stopped.
    func waitUntilStopped(_ pid: Int32) {
        for _ in 0..<100 {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return }
            let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).prefix(1)
            if state == "T" || state == "t" || state == "Z" || state == "X" { return }
            usleep(500)
        }
    }
}
