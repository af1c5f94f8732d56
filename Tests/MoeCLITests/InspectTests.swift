import Foundation
import MoeTestSupport
import XCTest

/// The read-side commands on the shared lineage store: diff, reproduce, verify, runs, --help.
final class InspectTests: XCTestCase {
    // MARK: diff

    func testDiffOfTwoRegimesNamesTheGroupsThatDiffer() throws {
        let lineage = try Lineage.shared()
        let result = try lineage.store.moerec(["diff", String(lineage.attention.prefix(10)), String(lineage.ffn.prefix(10))])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(configChanges(result.stdout), ["regime: attention → ffn"], result.stdout)
        XCTAssertTrue(result.stdout.contains("same ancestors"), result.stdout)
        // attention trains attn (+ head), ffn trains the dense FFN (+ head); everything else is
        // the parent's, byte for byte, in both.
        XCTAssertEqual(differingGroups(result.stdout), ["attn", "ffn", "head"], result.stdout)
        let rows = groupRows(result.stdout)
        for frozen in ["embed", "norm", "router", "experts"] {
            XCTAssertEqual(rows[frozen]?.differ, 0, "\(frozen) differs: \(result.stdout)")
        }
        for trained in ["attn", "ffn"] {
            XCTAssertEqual(rows[trained]?.differ, rows[trained]?.tensors, "not every \(trained) tensor differs: \(result.stdout)")
        }
    }

    func testDiffOfARunWithItselfShowsNoDifference() throws {
        let lineage = try Lineage.shared()
        let result = try lineage.store.moerec(["diff", lineage.ffn, String(lineage.ffn.prefix(8))])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(configChanges(result.stdout), ["(none)"], result.stdout)
        XCTAssertEqual(differingGroups(result.stdout), [], result.stdout)
        XCTAssertTrue(result.stdout.contains("shared metric series are identical"), result.stdout)
    }

    /// The lines under "config keys that differ", up to the blank line.
    private func configChanges(_ stdout: String) -> [String] {
        let lines = stdout.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "config keys that differ") else { return ["<no config section>"] }
        return Array(lines[(start + 1)...].prefix { !$0.isEmpty }).map { $0.trimmingCharacters(in: .whitespaces) }
    }

    private func differingGroups(_ stdout: String) -> Set<String> {
        guard let line = stdout.components(separatedBy: "\n").first(where: { $0.hasPrefix("groups that differ: ") }) else {
            return ["<no groups line>"]
        }
        let list = line.dropFirst("groups that differ: ".count)
        return list == "none" ? [] : Set(list.components(separatedBy: ", "))
    }

    /// group → (tensors, differ) from the "final parameters by group" table.
    private func groupRows(_ stdout: String) -> [String: (tensors: Int, differ: Int)] {
        let lines = stdout.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "final parameters by group") else { return [:] }
        var out: [String: (Int, Int)] = [:]
        for line in lines[(start + 3)...].prefix(while: { !$0.hasPrefix("groups that differ") }) {
            let cells = line.split(separator: " ").map(String.init)
            if cells.count >= 3, let t = Int(cells[1]), let d = Int(cells[2]) { out[cells[0]] = (t, d) }
        }
        return out
    }

    // MARK: reproduce

    func testReproduceOfAnUntouchedRunIsBitIdentical() throws {
        let lineage = try Lineage.shared()
        let text = try lineage.store.moerec(["reproduce", String(lineage.ffn.prefix(12))])
        XCTAssertEqual(text.status, 0, text.stdout + text.stderr)
        XCTAssertTrue(text.stdout.contains("\(lineage.ffn)  bit-identical"), text.stdout)

        let json = try lineage.store.moerec(["reproduce", lineage.moeParent, "--format", "json"])
        XCTAssertEqual(json.status, 0, json.stdout + json.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], json.stdout)
        for field in ["hash", "identical", "first_divergence", "checkpoint_match", "environment_diff"] {
            XCTAssertNotNil(report[field], "reproduce --format json lacks \(field): \(json.stdout)")
        }
        XCTAssertEqual(report["hash"] as? String, lineage.moeParent)
        XCTAssertEqual(report["identical"] as? Bool, true)
        XCTAssertEqual(report["checkpoint_match"] as? Bool, true)
        XCTAssertTrue(report["first_divergence"] is NSNull, json.stdout)
        XCTAssertEqual((report["environment_diff"] as? [String: Any])?.count, 0, json.stdout)
    }

    func testReproduceOfARunWithAnAlteredMetricFailsAndNamesTheStep() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("cli-reproduce-altered")
        defer { store.remove() }
        let before = try store.sql("""
            SELECT printf('%!.17g', value) FROM metric_points
            WHERE run_hash = '\(lineage.ffn)' AND split = 'val' AND name = 'loss' AND step = 10
            """)
        XCTAssertFalse(before.isEmpty, "the fixture has no val/loss at step 10")
        try store.sqlWrite("""
            UPDATE metrics SET value = value + 1
            WHERE run_id = (SELECT id FROM runs WHERE hash = '\(lineage.ffn)') AND step = 10
              AND split = (SELECT id FROM splits WHERE name = 'val')
              AND name_id = (SELECT id FROM metric_names WHERE name = 'loss')
            """)

        let text = try store.moerec(["reproduce", String(lineage.ffn.prefix(12))])
        XCTAssertEqual(text.status, 1, text.stdout + text.stderr)
        XCTAssertFalse(text.stdout.contains("bit-identical"), text.stdout)
        XCTAssertTrue(text.stdout.contains("first divergence: step 10 val/loss"), text.stdout)

        let json = try store.moerec(["reproduce", lineage.ffn, "--format", "json"])
        XCTAssertEqual(json.status, 1, json.stdout + json.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], json.stdout)
        XCTAssertEqual(report["identical"] as? Bool, false)
        // Only a metric was altered: the parameters still reproduce.
        XCTAssertEqual(report["checkpoint_match"] as? Bool, true)
        let divergence = try XCTUnwrap(report["first_divergence"] as? [String: Any], json.stdout)
        XCTAssertEqual(divergence["step"] as? Int, 10)
        XCTAssertEqual(divergence["split"] as? String, "val")
        XCTAssertEqual(divergence["metric"] as? String, "loss")
        let stored = try XCTUnwrap(divergence["stored"] as? Double), new = try XCTUnwrap(divergence["new"] as? Double)
        XCTAssertEqual(stored - new, 1, accuracy: 1e-9)
        XCTAssertEqual(new, Double(before))
    }

    /// A run that picks its step on small periodic evaluations and measures the kept
    /// parameters after training (`test_eval: selected`) re-executes bit for bit, the
    /// after-training measurements included; an altered one is named.
    func testReproduceOfASelectedEvaluationRunIsBitIdentical() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("cli-reproduce-selected")
        defer { store.remove() }
        let run = try store.moerec(["run", lineage.finetuneFile.path, "--set", "test_eval=selected", "--set", "periodic_eval_examples=8",
                                    "--set", "eval_interval=5"] + Lineage.fewCheckpoints)
        XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
        let hash = try XCTUnwrap(Output.runHash(run.stdout), run.stdout)
        let selected = try store.sql("""
            SELECT group_concat(split || '/' || name, ' ') FROM (SELECT split, name FROM metric_points
            WHERE run_hash = '\(hash)' AND name LIKE 'selected%' ORDER BY split, name)
            """)
        XCTAssertEqual(selected, "test/selected_acc test/selected_loss train/selected_acc train/selected_loss val/selected_acc val/selected_loss")

        let text = try store.moerec(["reproduce", String(hash.prefix(12))])
        XCTAssertEqual(text.status, 0, text.stdout + text.stderr)
        XCTAssertTrue(text.stdout.contains("\(hash)  bit-identical"), text.stdout)

        let step = try store.sql("SELECT step FROM metric_points WHERE run_hash = '\(hash)' AND split = 'test' AND name = 'selected_acc'")
        try store.sqlWrite("""
            UPDATE metrics SET value = value + 1
            WHERE run_id = (SELECT id FROM runs WHERE hash = '\(hash)')
              AND split = (SELECT id FROM splits WHERE name = 'test')
              AND name_id = (SELECT id FROM metric_names WHERE name = 'selected_acc')
            """)
        let altered = try store.moerec(["reproduce", String(hash.prefix(12))])
        XCTAssertEqual(altered.status, 1, altered.stdout + altered.stderr)
        XCTAssertTrue(altered.stdout.contains("first divergence: step \(step) test/selected_acc"), altered.stdout)
    }

    /// Results do not depend on the thread count: a run recorded at one thread re-executes
    /// bit for bit at two (only the environment line tells them apart).
    func testReproduceAtAnotherThreadCountIsBitIdentical() throws {
        let lineage = try Lineage.shared()
        let text = try lineage.store.moerec(["reproduce", String(lineage.ffn.prefix(12)), "--threads", "2"])
        XCTAssertEqual(text.status, 0, text.stdout + text.stderr)
        XCTAssertTrue(text.stdout.contains("\(lineage.ffn)  bit-identical"), text.stdout)
        XCTAssertTrue(text.stdout.contains("threads stored 1 vs now 2"), text.stdout)
    }

    /// A run computed by another numerics version is refused up front, naming both versions.
    func testReproduceOfARunFromAnotherNumericsVersionSaysSo() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("cli-reproduce-numerics")
        defer { store.remove() }
        try store.sqlWrite("UPDATE runs SET numerics_version = 1 WHERE hash = '\(lineage.ffn)'")
        let text = try store.moerec(["reproduce", String(lineage.ffn.prefix(12))])
        XCTAssertEqual(text.status, 1, text.stdout + text.stderr)
        XCTAssertTrue(text.stderr.contains("numerics version 1"), text.stderr)
        XCTAssertTrue(text.stderr.contains("computes version 2"), text.stderr)
    }

    // MARK: verify

    func testVerifyDetectsAFlippedByteInAnObject() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("cli-verify")
        defer { store.remove() }
        let clean = try store.moerec(["verify"])
        XCTAssertEqual(clean.status, 0, clean.stdout + clean.stderr)
        XCTAssertTrue(clean.stdout.contains(" 0 problems"), clean.stdout)

        // Corrupt one tensor of the ffn run's final checkpoint (the FFN weights it trained).
        let sha = try store.sql("""
            SELECT json_extract(t.value, '$.sha256') FROM checkpoints c JOIN runs r ON r.id = c.run_id,
                   json_each(c.manifest_json, '$.tensors') t
            WHERE r.hash = '\(lineage.ffn)' AND json_extract(t.value, '$.group') = 'ffn' LIMIT 1
            """)
        XCTAssertTrue(Output.isFullHash(sha), "no ffn tensor found: \(sha)")
        let location = try store.sql("SELECT location FROM blobs WHERE sha256 = '\(sha)'")
        let object = store.objects.appendingPathComponent(location)
        XCTAssertTrue(FileManager.default.fileExists(atPath: object.path), "object \(sha) is not at \(object.path)")
        var bytes = try Data(contentsOf: object)
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: object)

        let corrupt = try store.moerec(["verify"])
        XCTAssertEqual(corrupt.status, 1, corrupt.stdout + corrupt.stderr)
        XCTAssertTrue(corrupt.stdout.contains("object \(sha)"), "verify does not name the object: \(corrupt.stdout)")
        XCTAssertTrue(corrupt.stdout.contains("used by \(lineage.ffn.prefix(12))"), "verify does not name the run: \(corrupt.stdout)")
        XCTAssertTrue(corrupt.stdout.contains(" 1 problem"), corrupt.stdout)

        // Only the run that uses the object is affected.
        let ffnOnly = try store.moerec(["verify", lineage.ffn])
        XCTAssertEqual(ffnOnly.status, 1, ffnOnly.stdout + ffnOnly.stderr)
        let attentionOnly = try store.moerec(["verify", lineage.attention])
        XCTAssertEqual(attentionOnly.status, 0, attentionOnly.stdout + attentionOnly.stderr)
    }

    /// Rows written behind the store's back with what the schema leaves to moerec's writers
    /// (migration 005): a config that is not one JSON object, a hash that is not lowercase
    /// hex. verify names each and exits 1; merging the store into another is refused as bad
    /// input (exit 2) and copies nothing.
    func testVerifyFlagsRowsTheSchemaLeavesToTheWritersAndMergeRefusesThem() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("cli-verify-rows")
        defer { store.remove() }
        let notAnObject = String(repeating: "e", count: 64), upper = String(repeating: "E", count: 64)
        try store.sqlWrite("""
            INSERT INTO runs (hash, kind, status, config_json, dataset_fingerprint, numerics_version)
            VALUES ('\(notAnObject)', 'pretrain', 'queued', '[1]', 'fp', 1), ('\(upper)', 'pretrain', 'queued', '{}', 'fp', 1)
            """)
        let verify = try store.moerec(["verify"])
        XCTAssertEqual(verify.status, 1, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.contains("inconsistent: run eeeeeeeeeeee: its config_json is not one JSON object: "
                                             + "expected a JSON object but found character '[' at line 1, column 1: the row was written outside moerec"),
                      verify.stdout)
        XCTAssertTrue(verify.stdout.contains("inconsistent: run EEEEEEEEEEEE: its hash \"\(upper)\" is not 64 lowercase hex digits"),
                      verify.stdout)
        XCTAssertTrue(verify.stdout.contains(" 2 problems"), verify.stdout)

        let destination = StoreUnderTest.fresh("cli-merge-rows")
        defer { destination.remove() }
        let merged = try destination.moerec(["merge", store.database.path])
        XCTAssertEqual(merged.status, 2, merged.stdout + merged.stderr)
        XCTAssertTrue(merged.stderr.contains("run \"\(notAnObject)\" of store '\(store.database.path)' cannot be merged: "
                                             + "its config_json is not one JSON object"), merged.stderr)
        XCTAssertEqual(try destination.sql("SELECT count(*) FROM runs"), "0")
    }

    // MARK: runs

    func testRunsJSONAndCSVCarryTheFullHashAndWhereFilters() throws {
        let lineage = try Lineage.shared()
        let store = lineage.store
        let all = Set(try store.sql("SELECT hash FROM runs").split(separator: "\n").map(String.init))
        let finetunes: Set<String> = [lineage.attention, lineage.ffn]
        XCTAssertEqual(all, [lineage.moeParent, lineage.denseParent, lineage.attention, lineage.ffn])

        let json = try store.runs()
        XCTAssertEqual(Set(json.compactMap { $0["hash"] as? String }), all)
        for row in json { XCTAssertTrue(Output.isFullHash(row["hash"] as? String ?? ""), "\(row)") }
        let filtered = try store.runs(where: "kind=finetune")
        XCTAssertEqual(Set(filtered.compactMap { $0["hash"] as? String }), finetunes)
        XCTAssertEqual(Set(filtered.compactMap { $0["kind"] as? String }), ["finetune"])
        XCTAssertEqual(Set(filtered.compactMap { $0["regime"] as? String }), ["attention", "ffn"])

        func csvHashes(_ args: [String]) throws -> Set<String> {
            let result = try store.moerec(["runs", "--format", "csv"] + args)
            XCTAssertEqual(result.status, 0, result.stderr)
            let lines = result.stdout.split(separator: "\n").map(String.init)
            XCTAssertEqual(lines.first?.split(separator: ",").first, "hash", result.stdout)
            let hashes = lines.dropFirst().map { String($0.split(separator: ",", omittingEmptySubsequences: false)[0]) }
            for h in hashes { XCTAssertTrue(Output.isFullHash(h), "CSV hash column: \(h)") }
            return Set(hashes)
        }
        XCTAssertEqual(try csvHashes([]), all)
        XCTAssertEqual(try csvHashes(["--where", "kind=finetune"]), finetunes)
        XCTAssertEqual(try csvHashes(["--where", "kind=finetune and regime=ffn"]), [lineage.ffn])

        // $MOEREC_STORE names the store when --store is not given.
        let viaEnvironment = try CLI.run(["runs", "--format", "csv"], environment: ["MOEREC_STORE": store.database.path])
        XCTAssertEqual(viaEnvironment.status, 0, viaEnvironment.stderr)
        XCTAssertEqual(Set(viaEnvironment.stdout.split(separator: "\n").dropFirst().map { String($0.prefix(64)) }), all)

        let table = try store.moerec(["runs", "--where", "kind=pretrain and experts=1"])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains(String(lineage.denseParent.prefix(12))), table.stdout)
        for other in [lineage.moeParent, lineage.attention, lineage.ffn] {
            XCTAssertFalse(table.stdout.contains(String(other.prefix(12))), table.stdout)
        }
    }

    // MARK: help

    func testEveryCommandHasHelpWithAnExample() throws {
        let commands: [[String]] = [[], ["run"], ["sweep"], ["runs"], ["show"], ["diff"], ["reproduce"], ["verify"], ["report"],
                                    ["bench"], ["bench", "model"], ["bench", "store"], ["bench", "study"], ["bench", "plan"],
                                    ["baseline"], ["merge"], ["export"], ["bench", "merge"]]
        for command in commands {
            let result = try CLI.run(command + ["--help"], timeout: 60)
            let name = (["moerec"] + command).joined(separator: " ")
            XCTAssertEqual(result.status, 0, "\(name) --help: \(result.stderr)")
            XCTAssertTrue(result.stdout.contains("USAGE: \(name)"), "\(name) --help: \(result.stdout)")
            XCTAssertTrue(result.stdout.contains("Example"), "\(name) --help has no example:\n\(result.stdout)")
        }
    }

    // MARK: bench model

    /// `--train-experts K` times three fine-tuning steps of bench-small (regime moe, all 8
    /// experts with the router frozen, the first K only) and prints each median with the
    /// shares of parameters they train; bad values and a second comparison are refused.
    func testBenchModelTrainExpertsTimesTheNarrowedStep() throws {
        let result = try CLI.run(["bench", "model", "--train-experts", "2", "--steps", "1", "--format", "json"], timeout: 300)
        XCTAssertEqual(result.status, 0, result.stderr)
        let fields = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout)
        XCTAssertEqual(fields["train_experts"] as? Int, 2)
        XCTAssertEqual(fields["experts"] as? Int, 8)
        for key in ["step_seconds_moe", "step_seconds_experts_all", "step_seconds_train_experts", "measured_ratio", "measured_ratio_vs_moe"] {
            XCTAssertGreaterThan(try XCTUnwrap(fields[key] as? Double, "\(key) missing: \(result.stdout)"), 0, key)
        }
        // Frozen experts drop their weight-gradient GEMMs from the FLOP model, and 2 of 8
        // experts are a quarter of the experts' parameters.
        XCTAssertLessThan(try XCTUnwrap(fields["flop_model_ratio"] as? Double), 1)
        let some = try XCTUnwrap(fields["trainable_fraction"] as? Double)
        let every = try XCTUnwrap(fields["trainable_fraction_experts_all"] as? Double)
        XCTAssertLessThan(some, every / 3)
        for (arguments, words) in [(["--train-experts", "9"], "--train-experts 9"), (["--train-experts", "0"], "--train-experts 0"),
                                   (["--train-experts", "2", "--regime", "moe"], "give one")] {
            let bad = try CLI.run(["bench", "model"] + arguments, timeout: 60)
            XCTAssertEqual(bad.status, 2, bad.stderr)
            XCTAssertTrue(bad.stderr.contains(words), bad.stderr)
        }
    }

    // MARK: bench plan

    func testBenchPlanTimesEachPhaseOfASweepItPlans() throws {
        let result = try CLI.run(["bench", "plan", "--cells", "200", "--format", "json"], timeout: 120)
        XCTAssertEqual(result.status, 0, result.stderr)
        let fields = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout)
        XCTAssertEqual(fields["cells"] as? Int, 200)
        for key in ["check_s", "plan_s", "register_s", "completed_s", "total_s", "cells_per_s", "replan_s"] {
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(fields[key] as? Double, "\(key) missing: \(result.stdout)"), 0, key)
        }
        let bad = try CLI.run(["bench", "plan", "--cells", "15"], timeout: 60)
        XCTAssertEqual(bad.status, 2, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--cells 15"), bad.stderr)
    }
}
