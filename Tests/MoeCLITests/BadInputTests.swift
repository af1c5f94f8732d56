import Foundation
import MoeTestSupport
import XCTest

/// Bad input is refused before anything is written: exit 2, a message on stderr that names
/// the offending key or value, and a store that is byte-for-byte what it was.
final class BadInputTests: XCTestCase {
    struct Case {
        let what: String
        let args: [String]
        /// Texts the error message must contain (the key, the value, the file).
        let mentions: [String]
    }

    func testBadInputsExitTwoNameTheValueAndLeaveTheStoreUnchanged() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("cli-bad-input")
        defer { store.remove() }
        let inputs = store.dir.deletingLastPathComponent().appendingPathComponent("inputs")

        // A second run whose hash shares the MoE parent's first 6 digits, so that prefix is
        // ambiguous (a queued row, as `sweep` leaves before training).
        let prefix = String(lineage.moeParent.prefix(6))
        let twin = prefix + String(lineage.moeParent.dropFirst(6).map { $0 == "0" ? "1" : "0" })
        try store.sqlWrite("""
            INSERT INTO runs (hash, kind, status, config_json, dataset_fingerprint, numerics_version)
            SELECT '\(twin)', kind, 'queued', config_json, dataset_fingerprint, numerics_version
            FROM runs WHERE hash = '\(lineage.moeParent)'
            """)

        let pre = lineage.pretrainFile.path, ft = lineage.finetuneFile.path
        let unknownKey = try write(#"{"kind": "pretrain", "stepz": 5}"#, to: inputs.appendingPathComponent("unknown-key.json"))
        let stringSteps = try write(#"{"kind": "pretrain", "steps": "ten"}"#, to: inputs.appendingPathComponent("string-steps.json"))
        let yamlWrongType = try write("kind: pretrain\nexperts: four\n", to: inputs.appendingPathComponent("wrong-type.yaml"))
        let brokenJSON = try write(#"{"kind": "pretrain", "steps": 3,"#, to: inputs.appendingPathComponent("broken.json"))
        let brokenYAML = try write("kind: pretrain\nsteps: [1, 2\n  lr: : 0.1\n", to: inputs.appendingPathComponent("broken.yaml"))
        let duplicate = try write(#"{"kind": "pretrain", "steps": 5, "steps": 6}"#, to: inputs.appendingPathComponent("duplicate.json"))
        let missing = inputs.appendingPathComponent("no-such-config.yaml").path
        let injection = "regime=x'; DROP TABLE runs; --"

        let cases: [Case] = [
            Case(what: "unknown key in a JSON file", args: ["run", unknownKey.path], mentions: ["stepz", "unknown key"]),
            Case(what: "unknown key in --set", args: ["run", pre, "--set", "wibble=1"], mentions: ["wibble", "unknown key"]),
            Case(what: "--set without =", args: ["run", pre, "--set", "steps"], mentions: ["steps", "key=value"]),
            Case(what: "non-integer --set", args: ["run", pre, "--set", "steps=abc"], mentions: ["steps=abc"]),
            Case(what: "string for a number in JSON", args: ["run", stringSteps.path], mentions: ["steps=ten", "string-steps.json"]),
            Case(what: "string for a number in YAML", args: ["run", yamlWrongType.path], mentions: ["experts=four"]),
            Case(what: "experts=0", args: ["run", pre, "--set", "experts=0"], mentions: ["experts=0"]),
            Case(what: "top_k > experts", args: ["run", pre, "--set", "top_k=5"], mentions: ["top_k=5"]),
            Case(what: "lr=0", args: ["run", pre, "--set", "lr=0"], mentions: ["lr=0"]),
            Case(what: "lr<0", args: ["run", pre, "--set", "lr=-0.1"], mentions: ["lr=-0.1"]),
            Case(what: "capacity_factor_train=0", args: ["run", pre, "--set", "capacity_factor_train=0"],
                 mentions: ["capacity_factor_train=0"]),
            Case(what: "unknown regime", args: ["run", ft, "--set", "regime=bogus"], mentions: ["regime=bogus"]),
            Case(what: "custom regime with an unknown group", args: ["run", ft, "--set", "regime=custom", "--set", "groups=attn,wings"],
                 mentions: ["wings"]),
            Case(what: "fine-tuning without a parent",
                 args: ["run", "--set", "kind=finetune", "--set", "task=\(lineage.data.task.path)", "--set", "train_size=128"],
                 mentions: ["parent"]),
            Case(what: "unknown parent hash prefix", args: ["run", ft, "--set", "parent=deadbeef"], mentions: ["deadbeef"]),
            Case(what: "architecture key that contradicts the parent", args: ["run", ft, "--set", "d_model=64"],
                 mentions: ["d_model=64"]),
            Case(what: "moe regime on a dense parent", args: ["run", ft, "--set", "parent=\(lineage.denseParent)", "--set", "regime=moe"],
                 mentions: ["regime=moe", "nothing but the head"]),
            Case(what: "task file that does not exist", args: ["run", ft, "--set", "task=\(inputs.path)/absent.jsonl"],
                 mentions: ["absent.jsonl"]),
            Case(what: "train_size larger than the task", args: ["run", ft, "--set", "train_size=100000"], mentions: ["train_size=100000"]),
            Case(what: "non-hex prefix for show", args: ["show", "xyz-not-hex"], mentions: ["xyz-not-hex"]),
            Case(what: "ambiguous prefix for show", args: ["show", prefix], mentions: [prefix, "ambiguous"]),
            Case(what: "ambiguous prefix for diff", args: ["diff", prefix, lineage.attention], mentions: [prefix, "ambiguous"]),
            Case(what: "non-hex prefix for diff", args: ["diff", lineage.attention, "g00d"], mentions: ["g00d"]),
            Case(what: "reproduce a run that never completed", args: ["reproduce", twin], mentions: [String(twin.prefix(12)), "queued"]),
            Case(what: "invalid JSON file", args: ["run", brokenJSON.path], mentions: ["broken.json", "invalid JSON"]),
            Case(what: "invalid YAML file", args: ["run", brokenYAML.path], mentions: ["broken.yaml", "invalid YAML"]),
            Case(what: "duplicate key in a JSON file", args: ["run", duplicate.path], mentions: ["duplicate", "steps"]),
            Case(what: "nonexistent config file", args: ["run", missing], mentions: [missing]),
            Case(what: "SQL injection in --where (unbalanced quote)", args: ["runs", "--where", injection],
                 mentions: ["DROP TABLE runs"]),
            Case(what: "unknown status in --where", args: ["runs", "--where", "status=finished"], mentions: ["finished"]),
            Case(what: "unknown regime in --where", args: ["runs", "--where", "regime=nonsense"], mentions: ["nonsense", "regime is one of"]),
            Case(what: "unknown --preset", args: ["run", "--preset", "nope"], mentions: ["nope"]),
            Case(what: "unknown option", args: ["runs", "--bogus"], mentions: ["--bogus"]),
            Case(what: "--threads 0", args: ["runs", "--threads", "0"], mentions: ["--threads", "0"]),
            Case(what: "unknown --grid key", args: ["sweep", pre, "--grid", "wibble=1,2"], mentions: ["wibble"]),
        ]
        XCTAssertGreaterThanOrEqual(Set(cases.map(\.what)).count, 15)

        let runsBefore = try store.runs().count
        let before = try store.snapshot()
        var baseline = before
        for c in cases {
            let result = try store.moerec(c.args, timeout: 120)
            XCTAssertEqual(result.status, 2, "\(c.what): exit \(result.status)\nstdout: \(result.stdout)\nstderr: \(result.stderr)")
            XCTAssertTrue(result.stderr.hasPrefix("error:"), "\(c.what): stderr does not start with 'error:': \(result.stderr)")
            for text in c.mentions {
                XCTAssertTrue(result.stderr.contains(text), "\(c.what): the message does not name '\(text)': \(result.stderr)")
            }
            XCTAssertFalse(result.stdout.contains("completed"), "\(c.what): something ran: \(result.stdout)")
            // Compared with the state just before this case, so a failure names the culprit only.
            let now = try store.snapshot()
            let changes = now.changes(since: baseline)
            XCTAssertEqual(changes.count, 0, "\(c.what): the store changed: \(changes.prefix(5).joined(separator: ", "))")
            baseline = now
        }
        XCTAssertEqual(try store.snapshot().changes(since: before).count, 0, "the store changed")

        // The injection as a quoted value is just a string to compare with: no rows, no harm.
        let inert = try store.moerec(["runs", "--where", "task=\"x'; DROP TABLE runs; --\"", "--format", "json"])
        XCTAssertEqual(inert.status, 0, inert.stderr)
        XCTAssertEqual(inert.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "[]")
        XCTAssertEqual(try store.snapshot().changes(since: before).count, 0, "a quoted --where value changed the store")
        XCTAssertEqual(try store.runs().count, runsBefore)
        XCTAssertEqual(try store.sql("SELECT count(*) FROM runs"), String(runsBefore))
    }

    /// A fine-tuning config may name its parent by config file, which is run first when
    /// missing; a fine-tuning value that is out of range must be refused before that.
    func testInvalidFineTuningConfigDoesNotTrainItsParentFirst() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("cli-bad-input-parent-file")
        defer { store.remove() }
        let inputs = store.dir.deletingLastPathComponent().appendingPathComponent("inputs")
        // A parent that is not in the store yet (another seed of the fixture's pretraining).
        let parent = try write(Fixtures.pretrainConfig(corpus: lineage.data.corpus, steps: 10, extra: ["seed": "7"]),
                               to: inputs.appendingPathComponent("new-parent.json"))
        let before = try store.snapshot()
        for (what, override, mention) in [("unknown regime", "regime=bogus", "regime=bogus"), ("lr=0", "lr=0", "lr=0")] {
            let result = try store.moerec(["run", lineage.finetuneFile.path, "--set", "parent=\(parent.path)", "--set", override])
            XCTAssertEqual(result.status, 2, "\(what): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(mention), "\(what): \(result.stderr)")
            let changes = try store.snapshot().changes(since: before)
            XCTAssertEqual(changes.count, 0, "\(what): the parent was trained before the fine-tuning config was checked: "
                           + changes.prefix(3).joined(separator: ", "))
        }
    }

    /// A sweep whose base config is out of range for every cell is bad input too, not a
    /// study of skipped cells that exits 0.
    func testSweepWhoseEveryCellIsOutOfRangeIsBadInput() throws {
        let lineage = try Lineage.shared()
        let store = try lineage.store.copy("cli-bad-input-sweep")
        defer { store.remove() }
        // Count first: the sqlite3 CLI itself creates the -wal file the snapshot would see.
        let sweeps = try store.sql("SELECT count(*) FROM sweeps")
        let before = try store.snapshot()
        let result = try store.moerec(["sweep", lineage.pretrainFile.path, "--grid", "seed=0,1", "--set", "lr=0"])
        XCTAssertEqual(result.status, 2, result.stderr)
        XCTAssertTrue(result.stderr.contains("lr=0"), result.stderr)
        XCTAssertEqual(try store.sql("SELECT count(*) FROM sweeps"), sweeps, "a sweep was recorded")
        let changes = try store.snapshot().changes(since: before)
        XCTAssertEqual(changes.count, 0, "the store changed: " + changes.prefix(3).joined(separator: ", "))
    }
}
