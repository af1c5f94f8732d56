import Foundation
import MoeTestSupport
import XCTest

/// Category 6: training that diverges. The run must end `failed` with the step and the
/// reason, keep its checkpoints from before the divergence intact, exit non-zero, and
/// leave the other runs of the store alone.
///
/// What reliably diverges on the tiny fixture model: a large learning rate alone does not
/// (AdamW bounds the update size and the norms rescale), but decoupled weight decay with
/// lr·weight_decay > 2 multiplies every decayed weight by (1 − lr·wd) = −9 per step, so the
/// weights overflow within a dozen steps (lr 10, weight_decay 1, no clipping, no warm-up).
final class DivergenceFaultTests: FaultTestCase {
    override class var category: FaultCategory { .divergence }

    static let divergent = ["--set", "lr=10", "--set", "weight_decay=1", "--set", "grad_clip=0", "--set", "warmup_steps=0",
                            "--set", "schedule=constant", "--set", "checkpoint_interval=2", "--set", "eval_interval=2"]

    func testDivergingRunFailsAndKeepsItsCheckpoints() throws {
        _ = try SQL.requireBinary()
        let base = try FaultFixtures.baseStore()
        let dir = FaultFixtures.directory("diverge")
        let storeDir = dir.appendingPathComponent("store")
        try Files.copyStore(base.dir, to: storeDir)
        let db = storeDir.appendingPathComponent("moerec.sqlite").path
        let others = [base.pretrain, base.finetune]
        let othersBefore = try StoreState.runs(db, hashes: others)
        let config = try FaultFixtures.pretrainConfig(in: dir, name: "diverge.json", steps: 60)
        let args = ["run", config.path] + Self.divergent + ["--store", db]
        let out = try Moerec.run(args)
        let hash = FaultFixtures.firstHash(out.stdout) ?? ""
        // "HASH  failed at step N: reason"
        var failedStep = -1
        if let r = out.stdout.range(of: "failed at step ") {
            failedStep = Int(out.stdout[r.upperBound...].prefix { $0.isNumber }) ?? -1
        }

        runCase(.divergence, "diverging pretraining run exits non-zero and reports the step and reason") { check in
            check.expect(out.status == 1 && !out.crashed, "\(out.exitDescription), expected exit 1: \(out.stderr.suffix(300))")
            check.expect(!hash.isEmpty && failedStep > 0, "no 'HASH  failed at step N' line: \(out.stdout.prefix(300))")
            check.expect(out.stdout.contains("non-finite"), "the reason does not say non-finite: \(out.stdout.prefix(300))")
            check.note(String(out.stdout.split(separator: "\n").first ?? ""))
        }

        runCase(.divergence, "the store marks the run failed with its step and reason") { check in
            guard !hash.isEmpty else { return check.fail("no run hash") }
            let show = try Moerec.run(["show", String(hash.prefix(12)), "--store", db])
            check.expect(show.status == 0, "show: \(show)")
            let statusLine = show.stdout.split(separator: "\n").first { $0.hasPrefix("kind") } ?? ""
            check.expect(statusLine.contains("status failed") && statusLine.contains("reason: non-finite")
                         && statusLine.contains("at step \(failedStep)"), "show: '\(statusLine)'")
            let row = try SQL.exec(db, "SELECT status || '|' || failure_step || '|' || failure_reason FROM runs WHERE hash = \(SQL.quote(hash))")
            check.expect(row.hasPrefix("failed|\(failedStep)|non-finite"), "runs row: \(row)")
            let listed = try Moerec.run(["runs", "--where", "status=failed", "--format", "csv", "--store", db])
            check.expect(listed.stdout.contains(hash), "`runs --where status=failed` does not list it")
        }

        runCase(.divergence, "the last good checkpoint is kept and intact") { check in
            guard !hash.isEmpty, failedStep > 0 else { return check.fail("no failed run") }
            let steps = try SQL.lines(db, """
                SELECT c.step FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.hash = \(SQL.quote(hash)) ORDER BY c.step
                """).compactMap { Int($0) }
            let expectedLast = (failedStep - 1) / 2 * 2
            check.expect(!steps.isEmpty && steps.last == expectedLast,
                         "checkpoints at \(steps), expected the last at step \(expectedLast) (failure at \(failedStep))")
            // Good: the loss was finite at and before the checkpointed step.
            let bad = try SQL.int(db, """
                SELECT count(*) FROM metric_points WHERE run_hash = \(SQL.quote(hash)) AND split = 'step' AND name = 'loss'
                   AND step <= \(expectedLast) AND (value IS NULL OR abs(value) > 1e38)
                """)
            check.expect(bad == 0, "\(bad) non-finite losses at or before the kept checkpoint")
            let verify = try Moerec.run(["verify", String(hash.prefix(12)), "--store", db])
            check.expect(verify.status == 0, "verify of the failed run's checkpoints: \(verify.stdout.suffix(300))")
            check.note("checkpoints kept at steps \(steps.map(String.init).joined(separator: ", "))")
        }

        runCase(.divergence, "running the same command again does not retrain or change anything") { check in
            guard !hash.isEmpty else { return check.fail("no run hash") }
            let before = try StoreState.runs(db, hashes: [hash])
            let again = try Moerec.run(args)
            check.expect(again.status == 1 && again.stdout.contains("failed at step \(failedStep)"), "second run: \(again)")
            check.expect(try StoreState.runs(db, hashes: [hash]) == before, "the failed run's rows changed on the second command")
            check.expect(try StoreState.runs(db, hashes: others) == othersBefore, "other runs changed")
            check.expect(try StoreState.integrity(db) == "ok", "integrity_check")
        }

        runCase(.divergence, "diverging fine-tuning run fails the same way") { check in
            let ft = try FaultFixtures.finetuneConfig(in: dir, parent: base.pretrain, name: "diverge-ft.json", steps: 40)
            let out = try Moerec.run(["run", ft.path] + Self.divergent + ["--store", db])
            check.expect(out.status == 1 && !out.crashed, "\(out.exitDescription): \(out.stdout.prefix(200)) \(out.stderr.suffix(200))")
            guard let h = FaultFixtures.firstHash(out.stdout) else { return check.fail("no hash in \(out.stdout.prefix(200))") }
            check.expect(out.stdout.contains("failed at step"), "stdout: \(out.stdout.prefix(200))")
            check.expect(try StoreState.status(db, hash: h) == "failed", "status is not failed")
            check.expect(try Moerec.run(["verify", String(h.prefix(12)), "--store", db]).status == 0, "verify of the fine-tuning run")
            check.expect(try StoreState.runs(db, hashes: others) == othersBefore, "other runs changed")
            check.note(String(out.stdout.split(separator: "\n").first ?? ""))
        }

        runCase(.divergence, "divergence at step 1 (no checkpoint yet) is still a clean failure") { check in
            let out = try Moerec.run(["run", config.path, "--set", "aux_loss_coef=1e29", "--set", "steps=5", "--store", db])
            check.expect(out.status == 1 && !out.crashed, "\(out.exitDescription): \(out.stdout.prefix(200)) \(out.stderr.suffix(200))")
            check.expect(out.stdout.contains("failed at step 1"), "stdout: \(out.stdout.prefix(200))")
            if let h = FaultFixtures.firstHash(out.stdout) {
                check.expect(try StoreState.status(db, hash: h) == "failed", "status is not failed")
            }
        }
    }
}
