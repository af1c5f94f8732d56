import Foundation
import MoeTestSupport
import XCTest

/// Category 3: damaged checkpoint objects (bit flip, truncation, deletion, a wrong-size
/// file) and altered database rows. `moerec verify` and/or `moerec reproduce` must notice
/// each, name what is wrong (the object hash, the run/step/tensor or the metric step) and
/// exit 1.
final class CorruptionFaultTests: FaultTestCase {
    override class var category: FaultCategory { .corruption }

    struct Object {
        let sha: String
        let name: String
        let rawSize: Int
    }

    /// A parameter (or optimizer) tensor object of `hash`'s checkpoint at `step`.
    func object(_ db: String, run hash: String, step: Int, list: String = "tensors", index: Int = 0) throws -> Object {
        let line = try SQL.exec(db, """
            SELECT json_extract(c.manifest_json, '$.\(list)[\(index)].sha256') || ' ' ||
                   json_extract(c.manifest_json, '$.\(list)[\(index)].name') || ' ' ||
                   json_extract(c.manifest_json, '$.\(list)[\(index)].raw_size')
              FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.hash = \(SQL.quote(hash)) AND c.step = \(step)
            """).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
        guard line.count == 3, let size = Int(line[2]) else { throw FaultError("no \(list)[\(index)] in \(hash.prefix(12)) step \(step)") }
        return Object(sha: String(line[0]), name: String(line[1]), rawSize: size)
    }

    func path(_ dir: URL, _ sha: String) -> String {
        dir.appendingPathComponent("objects/\(sha.prefix(2))/\(sha.dropFirst(2))").path
    }

    /// Rewrites an object file (objects are stored read-only, 0444).
    func rewrite(_ path: String, _ transform: (inout Data) -> Void) throws {
        guard var data = FileManager.default.contents(atPath: path) else { throw FaultError("cannot read \(path)") }
        chmod(path, 0o644)
        transform(&data)
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// A fresh copy of the base store for one case.
    func caseStore() throws -> (dir: URL, db: String, pretrain: String, finetune: String) {
        let base = try FaultFixtures.baseStore()
        let dir = FaultFixtures.directory("c3case")
        try Files.copyStore(base.dir, to: dir)
        return (dir, dir.appendingPathComponent("moerec.sqlite").path, base.pretrain, base.finetune)
    }

    /// verify exits 1 and names the object, what is wrong with it, and who uses it.
    func expectVerifyNames(_ check: CaseCheck, db: String, object: Object, kinds: [String], usedBy: String?) throws {
        let verify = try Moerec.run(["verify", "--store", db])
        check.expect(verify.status == 1 && !verify.crashed, "verify: \(verify.exitDescription), expected exit 1")
        check.expect(verify.stdout.contains(object.sha), "verify does not name object \(object.sha.prefix(16)): \(verify.stdout.prefix(400))")
        check.expect(verify.stdout.containsAny(kinds), "verify does not say \(kinds.joined(separator: "/")): \(verify.stdout.prefix(400))")
        if let usedBy {
            check.expect(verify.stdout.contains(usedBy), "verify does not say the object is used by '\(usedBy)': \(verify.stdout.prefix(500))")
        }
        check.note("verify: \(verify.stdout.split(separator: "\n").first ?? "")")
    }

    func testCorruptedObjects() throws {
        _ = try SQL.requireBinary()

        runCase(.corruption, "bit flip in a parameter object of the parent's final checkpoint") { check in
            let s = try caseStore()
            let obj = try object(s.db, run: s.pretrain, step: 20)
            try rewrite(path(s.dir, obj.sha)) { data in data[data.count / 2] ^= 0x10 }
            try expectVerifyNames(check, db: s.db, object: obj, kinds: ["corrupt: object", "hashMismatch: object", "sizeMismatch: object"],
                                  usedBy: "\(s.pretrain.prefix(12)) step 20 \(obj.name)")
            // The child's reproduction reads the parent's final checkpoint.
            let rep = try Moerec.run(["reproduce", String(s.finetune.prefix(12)), "--store", s.db])
            check.expect(rep.status == 1 && !rep.crashed, "reproduce of the child: \(rep.exitDescription), expected exit 1")
            check.expect((rep.stdout + rep.stderr).contains(obj.sha), "reproduce of the child does not name the object: \(rep)")
            // The parent's own reproduction compares manifest digests only.
            let own = try Moerec.run(["reproduce", String(s.pretrain.prefix(12)), "--store", s.db])
            if own.status == 0 {
                FaultLedger.shared.observe("`moerec reproduce \(s.pretrain.prefix(12))` exits 0 (\"bit-identical\") although an object of that run's own final checkpoint is corrupt: reproduce compares manifest digests and never reads the stored objects; only `verify` (or reproducing a child) notices")
            }
        }

        runCase(.corruption, "truncated optimizer-state object (parent, step 10)") { check in
            let s = try caseStore()
            let obj = try object(s.db, run: s.pretrain, step: 10, list: "optimizer", index: 0)
            try rewrite(path(s.dir, obj.sha)) { data in data = data.prefix(data.count / 2) }
            try expectVerifyNames(check, db: s.db, object: obj, kinds: ["stream is truncated"],
                                  usedBy: "\(s.pretrain.prefix(12)) step 10 \(obj.name)")
        }

        runCase(.corruption, "deleted object file (child's final checkpoint)") { check in
            let s = try caseStore()
            let obj = try object(s.db, run: s.finetune, step: 10, index: 1)
            check.expect(unlink(path(s.dir, obj.sha)) == 0, "could not delete the object")
            try expectVerifyNames(check, db: s.db, object: obj, kinds: ["missing: object"],
                                  usedBy: "\(s.finetune.prefix(12)) step 10 \(obj.name)")
            let scoped = try Moerec.run(["verify", String(s.finetune.prefix(12)), "--store", s.db])
            check.expect(scoped.status == 1 && scoped.stdout.contains(obj.sha), "verify HASH of the child: \(scoped)")
        }

        runCase(.corruption, "object replaced by a valid object of another size") { check in
            let s = try caseStore()
            let obj = try object(s.db, run: s.pretrain, step: 20, index: 2)
            let other = try SQL.exec(s.db, "SELECT sha256 FROM blobs WHERE raw_size <> \(obj.rawSize) ORDER BY sha256 LIMIT 1")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            guard let replacement = FileManager.default.contents(atPath: path(s.dir, other)) else { return check.fail("no other object") }
            try rewrite(path(s.dir, obj.sha)) { data in data = replacement }
            try expectVerifyNames(check, db: s.db, object: obj, kinds: ["sizeMismatch: object"],
                                  usedBy: "\(s.pretrain.prefix(12)) step 20 \(obj.name)")
            let rep = try Moerec.run(["reproduce", String(s.finetune.prefix(12)), "--store", s.db])
            check.expect(rep.status == 1 && (rep.stdout + rep.stderr).contains(obj.sha), "reproduce of the child: \(rep)")
        }

        if FaultSuite.full {
            // Every object of the parent's final checkpoint, one at a time, each damage kind.
            let s = try caseStore()
            let count = try SQL.int(s.db, """
                SELECT json_array_length(c.manifest_json, '$.tensors') FROM checkpoints c JOIN runs r ON r.id = c.run_id
                 WHERE r.hash = \(SQL.quote(s.pretrain)) AND c.step = 20
                """)
            for i in 0..<count {
                runCase(.corruption, "full: damage kinds on parent tensor #\(i)") { check in
                    let c = try caseStore()
                    let obj = try object(c.db, run: c.pretrain, step: 20, index: i)
                    let file = path(c.dir, obj.sha)
                    let original = FileManager.default.contents(atPath: file)!
                    let damages: [(String, (inout Data) -> Void, [String])] = [
                        ("first byte flipped", { $0[0] ^= 0xff }, ["corrupt: object", "hashMismatch: object", "sizeMismatch: object"]),
                        ("last byte flipped", { $0[$0.count - 1] ^= 0x01 }, ["corrupt: object", "hashMismatch: object"]),
                        ("emptied", { $0 = Data() }, ["corrupt: object"]),
                        ("bytes appended", { $0.append(contentsOf: [1, 2, 3]) }, ["corrupt: object"]),
                    ]
                    for (label, damage, kinds) in damages {
                        try rewrite(file, damage)
                        let verify = try Moerec.run(["verify", "--store", c.db])
                        check.expect(verify.status == 1 && verify.stdout.contains(obj.sha) && verify.stdout.containsAny(kinds),
                                     "\(label): verify \(verify.exitDescription): \(verify.stdout.prefix(300))")
                        try rewrite(file) { $0 = original }
                    }
                }
            }
        }
    }

    func testAlteredRows() throws {
        _ = try SQL.requireBinary()

        runCase(.corruption, "altered metric value (parent, step 7 loss)") { check in
            let s = try caseStore()
            let changed = try SQL.exec(s.db, """
                UPDATE metrics SET value = value + 1e-9
                 WHERE run_id = (SELECT id FROM runs WHERE hash = \(SQL.quote(s.pretrain))) AND step = 7
                   AND name_id = (SELECT id FROM metric_names WHERE name = 'loss')
                   AND split = (SELECT id FROM splits WHERE name = 'step');
                SELECT changes();
                """, readOnly: false).trimmingCharacters(in: .whitespacesAndNewlines)
            check.expect(changed == "1", "the UPDATE changed \(changed) rows")
            let rep = try Moerec.run(["reproduce", String(s.pretrain.prefix(12)), "--store", s.db])
            check.expect(rep.status == 1 && !rep.crashed, "reproduce: \(rep.exitDescription), expected exit 1")
            check.expect(rep.stdout.contains("first divergence: step 7 step/loss"), "reproduce does not name step 7 step/loss: \(rep.stdout.prefix(400))")
            let json = try Moerec.run(["reproduce", String(s.pretrain.prefix(12)), "--format", "json", "--store", s.db])
            check.expect(json.status == 1 && json.stdout.contains("\"step\":7") && json.stdout.contains("\"identical\":false"),
                         "reproduce --format json: \(json.stdout.prefix(300))")
        }

        runCase(.corruption, "deleted metric row (parent, step 10 val/acc)") { check in
            let s = try caseStore()
            try SQL.exec(s.db, """
                DELETE FROM metrics WHERE run_id = (SELECT id FROM runs WHERE hash = \(SQL.quote(s.pretrain))) AND step = 10
                   AND name_id = (SELECT id FROM metric_names WHERE name = 'acc') AND split = (SELECT id FROM splits WHERE name = 'val')
                """, readOnly: false)
            let rep = try Moerec.run(["reproduce", String(s.pretrain.prefix(12)), "--store", s.db])
            check.expect(rep.status == 1, "reproduce: \(rep.exitDescription), expected exit 1")
            check.expect(rep.stdout.contains("step 10 val/acc") && rep.stdout.contains("absent"),
                         "reproduce does not name the missing point: \(rep.stdout.prefix(400))")
        }

        runCase(.corruption, "altered blob row (recorded raw size)") { check in
            let s = try caseStore()
            let obj = try object(s.db, run: s.pretrain, step: 20, index: 0)
            try SQL.exec(s.db, "UPDATE blobs SET raw_size = raw_size + 4 WHERE sha256 = \(SQL.quote(obj.sha))", readOnly: false)
            try expectVerifyNames(check, db: s.db, object: obj, kinds: ["sizeMismatch: object"], usedBy: nil)
        }

        if FaultSuite.full {
            runCase(.corruption, "full: a checkpoint manifest pointing at another tensor's object") { check in
                let s = try caseStore()
                let a = try object(s.db, run: s.pretrain, step: 20, index: 0)
                let b = try object(s.db, run: s.pretrain, step: 20, index: 1)
                try SQL.exec(s.db, """
                    UPDATE checkpoints SET manifest_json = replace(manifest_json, \(SQL.quote(a.sha)), \(SQL.quote(b.sha)))
                     WHERE run_id = (SELECT id FROM runs WHERE hash = \(SQL.quote(s.pretrain))) AND step = 20
                    """, readOnly: false)
                let rep = try Moerec.run(["reproduce", String(s.pretrain.prefix(12)), "--store", s.db])
                check.expect(rep.status == 1 && rep.stdout.contains("checkpoint digest"), "reproduce: \(rep)")
                let child = try Moerec.run(["reproduce", String(s.finetune.prefix(12)), "--store", s.db])
                check.expect(child.status == 1 && !child.crashed, "reproduce of the child: \(child)")
            }
        }
    }
}
