import Foundation
import MoeTestSupport
import XCTest

/// Category 5: malformed inputs — config files, JSONL data, hash prefixes and `--where`
/// expressions. Each must be rejected with a message naming the problem (exit 2, bad
/// input), leave the store unchanged (its `.dump` and every object byte) and never crash.
/// Every invocation runs under a 4 GiB address-space limit so that a runaway allocation
/// fails inside moerec instead of starving the shared machine.
final class MalformedInputTests: FaultTestCase {
    override class var category: FaultCategory { .malformedInput }

    struct InputCase {
        let name: String
        let args: [String]
        /// Every string must appear in stderr.
        let expect: [String]
        var status: Int32 = 2
        var maxSeconds: Double? = nil
        var maxRSSMiB: Int? = nil
        var addressSpaceKiB: Int = 4 << 20
        var timeout: TimeInterval = 120
    }

    private var dir: URL!
    private var storeDir: URL!
    private var db: String!
    private var pristine: URL!
    private var snapshot = ""
    private var parent = ""

    /// A copy of the base store plus two queued runs whose hashes share the prefix `abcd`.
    func prepareStore() throws {
        _ = try SQL.requireBinary()
        let base = try FaultFixtures.baseStore()
        parent = base.pretrain
        dir = FaultFixtures.directory("inputs")
        pristine = dir.appendingPathComponent("pristine")
        try Files.copyStore(base.dir, to: pristine)
        let pdb = pristine.appendingPathComponent("moerec.sqlite").path
        for digit in ["0", "1"] {
            let hash = "abcd" + digit + String(repeating: "0", count: 59)
            try SQL.exec(pdb, """
                INSERT INTO runs (hash, kind, status, config_json, dataset_fingerprint, numerics_version)
                VALUES ('\(hash)', 'pretrain', 'queued', '{"seed":\(digit)}', 'fault-suite', 1)
                """, readOnly: false)
        }
        try SQL.exec(pdb, "PRAGMA wal_checkpoint(TRUNCATE)", readOnly: false)
        storeDir = dir.appendingPathComponent("store")
        try Files.copyStore(pristine, to: storeDir)
        db = storeDir.appendingPathComponent("moerec.sqlite").path
        snapshot = try StoreState.whole(storeDir)
    }

    /// Runs each case against the store and checks exit, message, crash, store.
    func runInputCases(_ cases: [InputCase]) {
        for c in cases {
            runCase(.malformedInput, c.name) { check in
                let out = try Moerec.runLimited(c.args + ["--store", db], addressSpaceKiB: c.addressSpaceKiB, timeout: c.timeout)
                if out.crashed {
                    check.fail("crashed (\(out.exitDescription)) instead of exit \(c.status): \(out.headline)")
                } else {
                    check.expect(out.status == c.status, "\(out.exitDescription), expected exit \(c.status): \(out.headline)")
                    for needle in c.expect {
                        check.expect(out.stderr.contains(needle), "message lacks '\(needle)': \(out.headline)")
                    }
                }
                if let limit = c.maxSeconds { check.expect(out.seconds <= limit, "took \(String(format: "%.1f", out.seconds)) s (limit \(limit) s)") }
                if let limit = c.maxRSSMiB, let rss = out.maxRSSKiB {
                    check.expect(rss / 1024 <= limit, "peak memory \(rss / 1024) MiB (limit \(limit) MiB)")
                }
                check.note("\(out.exitDescription) in \(String(format: "%.2f", out.seconds)) s, peak \((out.maxRSSKiB ?? 0) / 1024) MiB: \(out.headline.prefix(200))")
                let now = try StoreState.whole(storeDir)
                if now != snapshot {
                    check.fail("the store changed: \(firstDifference(snapshot, now))")
                    try Files.copyStore(pristine, to: storeDir)  // so later cases start clean
                }
            }
        }
    }

    func firstDifference(_ a: String, _ b: String) -> String {
        let la = a.split(separator: "\n", omittingEmptySubsequences: false), lb = b.split(separator: "\n", omittingEmptySubsequences: false)
        for (x, y) in zip(la, lb) where x != y { return "'\(x.prefix(160))' became '\(y.prefix(160))'" }
        return la.count < lb.count ? "added '\(lb[la.count].prefix(160))'" : "lines removed"
    }

    func file(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Files.write(text, to: url)
        return url.path
    }

    func file(_ name: String, bytes: [UInt8]) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// Writes a JSONL file whose line `at` (1-based) is one `megabytes`-MB line.
    func hugeLineFile(_ name: String, megabytes: Int, at line: Int, task: Bool) throws -> String {
        let path = dir.appendingPathComponent(name).path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? h.close() }
        for i in 1..<line { h.write(Data((task ? "{\"text\": \"row \(i)\", \"label\": \"a\"}\n" : "{\"text\": \"row \(i)\"}\n").utf8)) }
        h.write(Data("{\"text\": \"".utf8))
        let chunk = Data(repeating: UInt8(ascii: "a"), count: 1 << 20)
        for _ in 0..<megabytes { h.write(chunk) }
        h.write(Data("\"}\n".utf8))
        return path
    }

    // MARK: Config files

    func testMalformedConfigs() throws {
        try prepareStore()
        let cfg = try FaultFixtures.pretrainConfig(in: dir, name: "ok.json", steps: 10).path
        let deepJSON = try file("deep.json", "{\"a\": " + String(repeating: "[", count: 100_000))
        let deepYAML = try file("deep.yaml", "a: " + String(repeating: "[", count: 100_000) + "\n")
        var bomb = "a: &a [" + Array(repeating: "\"x\"", count: 9).joined(separator: ",") + "]\n"
        var previous = "a"
        for name in ["b", "c", "d", "e", "f", "g", "h", "i"] {
            bomb += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ",") + "]\n"
            previous = name
        }
        let bombFile = try file("aliases.yaml", bomb)
        var cases: [InputCase] = [
            .init(name: "config: invalid JSON", args: ["run", try file("bad.json", "{\"steps\": 10,")], expect: ["bad.json", "invalid JSON"]),
            .init(name: "config: invalid YAML", args: ["run", try file("bad.yaml", "steps: [1, 2\n")], expect: ["bad.yaml", "invalid YAML"]),
            .init(name: "config: a JSON array, not a mapping", args: ["run", try file("array.json", "[1, 2]")], expect: ["array.json", "mapping"]),
            .init(name: "config: a YAML scalar, not a mapping", args: ["run", try file("scalar.yaml", "just words\n")], expect: ["scalar.yaml", "mapping"]),
            .init(name: "config: steps is a string", args: ["run", try file("t1.json", "{\"steps\": \"ten\"}")], expect: ["steps=ten", "integer"]),
            .init(name: "config: steps is a boolean", args: ["run", try file("t2.json", "{\"steps\": true}")], expect: ["steps", "integer"]),
            .init(name: "config: lr is a word (YAML)", args: ["run", try file("t3.yaml", "lr: fast\n")], expect: ["lr=fast", "number"]),
            .init(name: "config: regime is a number", args: ["run", try file("t4.json", "{\"regime\": 5}")], expect: ["regime", "string"]),
            .init(name: "config: groups is an object", args: ["run", try file("t5.json", "{\"groups\": {\"a\": 1}}")], expect: ["groups"]),
            .init(name: "config: unknown key", args: ["run", try file("t6.json", "{\"stepz\": 10}")], expect: ["unknown key 'stepz'"]),
            .init(name: "config: steps = 1e30", args: ["run", try file("h1.json", "{\"steps\": 1e30}")], expect: ["steps"]),
            .init(name: "config: steps = 99999999999999999999 (JSON)", args: ["run", try file("h2.json", "{\"steps\": 99999999999999999999}")],
                  expect: ["h2.json", "99999999999999999999"]),
            .init(name: "config: steps = 99999999999999999999 (YAML)", args: ["run", try file("h3.yaml", "steps: 99999999999999999999\n")],
                  expect: ["steps"]),
            .init(name: "config: steps = 100000000 (over the limit)", args: ["run", cfg, "--set", "steps=100000000"], expect: ["steps", "10000000"]),
            .init(name: "config: batch_size = -1", args: ["run", try file("h4.json", "{\"batch_size\": -1}")], expect: ["batch_size"]),
            .init(name: "config: lr = 1e300", args: ["run", try file("h5.json", "{\"lr\": 1e300}")], expect: ["lr"]),
            .init(name: "config: lr: .nan (YAML)", args: ["run", try file("n1.yaml", "lr: .nan\n")], expect: ["lr", "finite"]),
            .init(name: "config: steps: .nan (YAML)", args: ["run", try file("n2.yaml", "steps: .nan\n")], expect: ["steps"]),
            .init(name: "config: lr: .inf (YAML)", args: ["run", try file("n3.yaml", "lr: .inf\n")], expect: ["lr", "finite"]),
            .init(name: "config: weight_decay: -.inf (YAML)", args: ["run", try file("n4.yaml", "weight_decay: -.inf\n")], expect: ["weight_decay"]),
            .init(name: "config: NaN literal in JSON", args: ["run", try file("n5.json", "{\"lr\": NaN}")], expect: ["n5.json", "invalid JSON"]),
            .init(name: "--set steps=1e30", args: ["run", cfg, "--set", "steps=1e30"], expect: ["steps=1e30"]),
            .init(name: "--set steps=99999999999999999999", args: ["run", cfg, "--set", "steps=99999999999999999999"], expect: ["steps"]),
            .init(name: "--set lr=nan", args: ["run", cfg, "--set", "lr=nan"], expect: ["lr=nan"]),
            .init(name: "--set lr=-inf", args: ["run", cfg, "--set", "lr=-inf"], expect: ["lr"]),
            .init(name: "--set without =", args: ["run", cfg, "--set", "steps"], expect: ["key=value"]),
            .init(name: "config: JSON nested 100000 deep", args: ["run", deepJSON], expect: ["deep.json", "nesting"]),
            .init(name: "config: YAML nested 100000 deep", args: ["run", deepYAML], expect: ["deep.yaml"]),
            .init(name: "config: larger than 1 MiB", args: ["run", try file("large.json", "{\"seed\": 1" + String(repeating: " ", count: 1_100_000) + "}")],
                  expect: ["large.json", "1 MiB"]),
            .init(name: "config: invalid UTF-8", args: ["run", try file("binary.yaml", bytes: [0x73, 0x74, 0x65, 0x70, 0x73, 0x3a, 0x20, 0xff, 0xfe, 0x0a])],
                  expect: ["binary.yaml", "UTF-8"]),
            .init(name: "config: file does not exist", args: ["run", dir.appendingPathComponent("nope.yaml").path], expect: ["nope.yaml"]),
            .init(name: "config: a directory", args: ["run", dir.path + "/"], expect: [dir.path]),
            // Sizes the validation lets through but no machine can allocate: expected a
            // clear refusal naming the key, not an allocation crash.
            .init(name: "config: vocab = 100000000", args: ["run", cfg, "--set", "vocab=100000000"], expect: ["vocab"]),
            .init(name: "config: capacity_factor_train = 1e29", args: ["run", cfg, "--set", "capacity_factor_train=1e29"],
                  expect: ["capacity_factor_train"]),
            .init(name: "config: capacity_factor_eval = 1e29", args: ["run", cfg, "--set", "capacity_factor_eval=1e29"],
                  expect: ["capacity_factor_eval"]),
            .init(name: "config: largest allowed architecture (d_model 8192, d_ff 65536, 256 experts, 64 layers)",
                  args: ["run", cfg, "--set", "d_model=8192", "--set", "d_ff=65536", "--set", "experts=256", "--set", "layers=64",
                         "--set", "heads=1", "--set", "moe_every=1"],
                  expect: []),
            // A 1 KB YAML file whose aliases expand to 9^9 strings.
            .init(name: "config: YAML alias bomb (1 KB expanding to 387M nodes)", args: ["run", bombFile], expect: ["aliases.yaml"],
                  maxSeconds: 10, addressSpaceKiB: 1 << 20, timeout: 30),
        ]
        // A rejected input creates nothing: `run` checks the config before it opens (and so
        // creates) the store.
        let fresh = dir.appendingPathComponent("never-created/moerec.sqlite").path
        runCase(.malformedInput, "config: steps = 100000000 with --store NEW creates no store") { check in
            let rejected = try Moerec.runLimited(["run", cfg, "--set", "steps=100000000", "--store", fresh])
            check.expect(rejected.status == 2, "run: \(rejected.exitDescription), expected exit 2")
            check.expect(!FileManager.default.fileExists(atPath: (fresh as NSString).deletingLastPathComponent),
                         "the rejected run created \((fresh as NSString).deletingLastPathComponent)")
        }
        if FaultSuite.full {
            cases.append(.init(name: "full: config with 10000 unknown keys",
                               args: ["run", try file("many.json", "{" + (0..<10_000).map { "\"k\($0)\": \($0)" }.joined(separator: ",") + "}")],
                               expect: ["unknown key"]))
        }
        runInputCases(cases)
    }

    /// Inputs that used to pass silently: repeated, empty and duplicate grid values; keys
    /// of the other kind of run (which changed the hash and did nothing); enumerated keys
    /// outside their names whatever the kind; YAML number forms beyond plain decimal.
    func testStrictConfigAndGridInputs() throws {
        try prepareStore()
        let cfg = try FaultFixtures.pretrainConfig(in: dir, name: "strict.json", steps: 10).path
        var cases: [InputCase] = [
            .init(name: "sweep: a --grid key given twice", args: ["sweep", cfg, "--grid", "seed=0,1", "--grid", "seed=2"],
                  expect: ["--grid seed", "twice"]),
            .init(name: "sweep: an empty --grid value", args: ["sweep", cfg, "--grid", "seed=0,,1"], expect: ["--grid seed=0,,1", "empty value"]),
            .init(name: "sweep: a trailing comma in --grid", args: ["sweep", cfg, "--grid", "lr=0.1,"], expect: ["empty value"]),
            .init(name: "sweep: a duplicate --grid value", args: ["sweep", cfg, "--grid", "seed=0,1,0"], expect: ["--grid seed", "value 0", "twice"]),
            .init(name: "sweep: the same value spelled twice", args: ["sweep", cfg, "--grid", "lr=0.1,1e-1"], expect: ["--grid lr", "twice"]),
        ]
        // Every key that applies to fine-tuning only, on a pretraining config (and the
        // other way round), at a value other than its default.
        for (key, value) in [("regime", "moe"), ("task", "wn-pos"), ("train_size", "256"), ("eval_examples", "64"),
                             ("groups", "attn"), ("parent", "abcd")] {
            cases.append(.init(name: "config: \(key) on a pretraining run", args: ["run", cfg, "--set", "\(key)=\(value)"],
                               expect: ["\(key): applies to finetune runs only"]))
        }
        let finetune = try file("strict-finetune.json", "{\"kind\": \"finetune\", \"parent\": \"\(parent.prefix(12))\"}")
        for (key, value) in [("corpus", "other.jsonl"), ("eval_batches", "3")] {
            cases.append(.init(name: "config: \(key) on a fine-tuning run", args: ["run", finetune, "--set", "\(key)=\(value)"],
                               expect: ["\(key): applies to pretrain runs only"]))
        }
        for (key, value) in [("regime", "nonsense"), ("norm", "batchnorm"), ("schedule", "cosin"), ("kind", "eval"),
                             ("groups", "attn,mlp"), ("regime", "ALL")] {
            cases.append(.init(name: "config: \(key)=\(value) on a pretraining run", args: ["run", cfg, "--set", "\(key)=\(value)"],
                               expect: ["\(key)=\(value)", "expected"]))
            cases.append(.init(name: "config file: \(key): \(value)",
                               args: ["run", try file("enum-\(key)-\(value).yaml", "\(key): \(value)\n")],
                               expect: ["\(key)=\(value)", "expected"]))
        }
        for form in ["6_0", "0x6", "0o6", "0b110", "+0x6", "1_000", "0600", "6.", "1:30"] {
            cases.append(.init(name: "config: steps: \(form) (YAML)", args: ["run", try file("num-\(cases.count).yaml", "steps: \(form)\n")],
                               expect: ["steps=\(form)"]))
        }
        runInputCases(cases)
        // A key of the other kind at its default (a resolved config written out in full)
        // is accepted and keeps the hash: the dry run of both gives one hash.
        let plain = try Moerec.runLimited(["run", cfg, "--dry-run", "--store", db])
        let spelled = try Moerec.runLimited(["run", cfg, "--set", "regime=all", "--set", "train_size=4096", "--dry-run", "--store", db])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertEqual(plain.stdout, spelled.stdout)
    }

    // MARK: JSONL data

    func testMalformedData() throws {
        try prepareStore()
        let big = FaultSuite.full ? 1024 : 100
        func corpus(_ path: String) throws -> [String] {
            ["run", try FaultFixtures.pretrainConfig(in: dir, name: "corpus-cfg.json", steps: 10).path, "--set", "corpus=\(path)"]
        }
        func task(_ path: String) throws -> [String] {
            ["run", try FaultFixtures.finetuneConfig(in: dir, parent: parent, name: "task-cfg.json", steps: 10).path, "--set", "task=\(path)"]
        }
        let good = "{\"text\": \"a fine line of text\"}\n"
        let hugeCorpus = try hugeLineFile("huge-corpus.jsonl", megabytes: big, at: 1, task: false)
        let hugeTask = try hugeLineFile("huge-task.jsonl", megabytes: big, at: 3, task: true)
        let cases: [InputCase] = [
            .init(name: "corpus: bad UTF-8 bytes on line 2",
                  args: try corpus(try file("c-utf8.jsonl", bytes: Array(good.utf8) + Array("{\"text\": \"caf".utf8) + [0xc3, 0x28] + Array("\"}\n".utf8))),
                  expect: ["c-utf8.jsonl:2", "UTF-8"]),
            .init(name: "corpus: missing text field", args: try corpus(try file("c-missing.jsonl", good + "{\"txt\": \"x\"}\n")),
                  expect: ["c-missing.jsonl:2", "missing field \"text\""]),
            .init(name: "corpus: text is a number", args: try corpus(try file("c-number.jsonl", "{\"text\": 5}\n")),
                  expect: ["c-number.jsonl:1", "\"text\""]),
            .init(name: "corpus: empty file", args: try corpus(try file("c-empty.jsonl", "")), expect: ["c-empty.jsonl", "no records"]),
            .init(name: "corpus: blank lines only", args: try corpus(try file("c-blank.jsonl", "\n  \n\t\n")), expect: ["c-blank.jsonl", "no records"]),
            .init(name: "corpus: a line that is not an object", args: try corpus(try file("c-string.jsonl", "\"just text\"\n")),
                  expect: ["c-string.jsonl:1", "object"]),
            .init(name: "corpus: duplicate field", args: try corpus(try file("c-dup.jsonl", "{\"text\": \"a\", \"text\": \"b\"}\n")),
                  expect: ["c-dup.jsonl:1", "twice"]),
            .init(name: "corpus: unterminated JSON", args: try corpus(try file("c-cut.jsonl", good + "{\"text\": \"abc\n")),
                  expect: ["c-cut.jsonl:2", "invalid JSON"]),
            .init(name: "corpus: raw NUL byte in a string",
                  args: try corpus(try file("c-nul.jsonl", bytes: Array("{\"text\": \"a".utf8) + [0] + Array("b\"}\n".utf8))),
                  expect: ["c-nul.jsonl:1"]),
            .init(name: "corpus: file does not exist", args: try corpus(dir.appendingPathComponent("absent.jsonl").path),
                  expect: ["absent.jsonl", "no such file"]),
            .init(name: "corpus: one \(big) MB line (rejected fast, bounded memory)", args: try corpus(hugeCorpus),
                  expect: ["huge-corpus.jsonl:1", "longer than the limit"], maxSeconds: 10, maxRSSMiB: 256),
            .init(name: "task: missing label", args: try task(try file("t-missing.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\"}\n")),
                  expect: ["t-missing.jsonl:2", "missing field \"label\""]),
            .init(name: "task: label is an array", args: try task(try file("t-array.jsonl", "{\"text\": \"a\", \"label\": [1]}\n")),
                  expect: ["t-array.jsonl:1", "\"label\""]),
            .init(name: "task: mixed string and integer labels",
                  args: try task(try file("t-mixed.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": 3}\n")),
                  expect: ["t-mixed.jsonl:2", "label"]),
            .init(name: "task: a single class",
                  args: try task(try file("t-one.jsonl", (0..<200).map { "{\"text\": \"row \($0)\", \"label\": \"same\"}" }.joined(separator: "\n") + "\n")),
                  expect: ["t-one.jsonl", "2 distinct labels"]),
            .init(name: "task: bad UTF-8", args: try task(try file("t-utf8.jsonl", bytes: Array("{\"text\": \"\u{00e9}".utf8) + [0xe9, 0x80] + Array("\", \"label\": \"a\"}\n".utf8))),
                  expect: ["t-utf8.jsonl:1", "UTF-8"]),
            .init(name: "task: empty file", args: try task(try file("t-empty.jsonl", "")), expect: ["t-empty.jsonl", "no records"]),
            .init(name: "task: one \(big) MB line at line 3", args: try task(hugeTask),
                  expect: ["huge-task.jsonl:3", "longer than the limit"], maxSeconds: 10, maxRSSMiB: 256),
        ]
        runInputCases(cases)
        try? FileManager.default.removeItem(atPath: hugeCorpus)
        try? FileManager.default.removeItem(atPath: hugeTask)
    }

    // MARK: Exit 2 for every kind of bad input

    /// Inputs that used to exit 1 (or 0 with an empty listing) although the user typed them:
    /// over-large and loose `--where` filters, bad tags, report destinations that cannot be
    /// written, data paths that are not regular files.
    func testBadInputExitsTwo() throws {
        try prepareStore()
        let cfg = try FaultFixtures.pretrainConfig(in: dir, name: "exit2.json", steps: 10).path
        let ft = try FaultFixtures.finetuneConfig(in: dir, parent: parent, name: "exit2-ft.json", steps: 10).path
        func terms(_ n: Int, _ term: (Int) -> String, _ join: String) -> String { (0..<n).map(term).joined(separator: join) }
        let nested = String(repeating: "(", count: 60) + terms(300, { "seed=\($0)" }, " or ") + String(repeating: ")", count: 60)
        let fifo = dir.appendingPathComponent("pipe.jsonl").path
        mkfifo(fifo, 0o600)
        let configFifo = dir.appendingPathComponent("pipe.yaml").path
        mkfifo(configFifo, 0o600)
        let outFile = try file("report-target.txt", "not a directory\n")
        var cases: [InputCase] = [
            .init(name: "where: 1000 terms joined by or", args: ["runs", "--where", terms(1000, { "seed=\($0)" }, " or ")],
                  expect: ["invalid --where", "comparisons"]),
            .init(name: "where: 1000 terms joined by and", args: ["runs", "--where", terms(1000, { "experts>=\($0)" }, " and ")],
                  expect: ["invalid --where", "comparisons"]),
            .init(name: "where: 1000 tag terms", args: ["runs", "--where", terms(1000, { "tag=t\($0)" }, " or ")],
                  expect: ["invalid --where", "comparisons"]),
            .init(name: "where: 300 terms inside 60 parentheses", args: ["runs", "--where", nested], expect: ["invalid --where", "comparisons"]),
            .init(name: "report --where with 1000 terms", args: ["report", "--where", terms(1000, { "seed=\($0)" }, " or ")],
                  expect: ["invalid --where", "comparisons"]),
            .init(name: "where: unknown key", args: ["runs", "--where", "stepz=10"], expect: ["stepz", "unknown key"]),
            .init(name: "where: unknown key in an or", args: ["runs", "--where", "seed=0 or regimes=all"], expect: ["regimes", "unknown key"]),
            .init(name: "where: key in the wrong case", args: ["runs", "--where", "Seed=0"], expect: ["Seed", "unknown key"]),
            .init(name: "report --where unknown key", args: ["report", "--where", "tsk=wn-pos"], expect: ["tsk", "unknown key"]),
            .init(name: "where: integer key given a fraction", args: ["runs", "--where", "seed=1.5"], expect: ["1.5", "seed is an integer"]),
            .init(name: "where: integer key given a quoted string", args: ["runs", "--where", "experts='4'"], expect: ["experts is an integer"]),
            .init(name: "where: integer key given a word", args: ["runs", "--where", "steps>=many"], expect: ["many", "steps is an integer"]),
            .init(name: "where: number key given a word", args: ["runs", "--where", "lr<fast"], expect: ["fast", "lr is a number"]),
            .init(name: "where: number key given a boolean", args: ["runs", "--where", "dropout=true"], expect: ["dropout is a number"]),
            .init(name: "where: list key compared with <", args: ["runs", "--where", "groups<attn"], expect: ["groups", "list"]),
            .init(name: "run --tag empty", args: ["run", cfg, "--tag", ""], expect: ["--tag", "empty"]),
            .init(name: "run --tag of 129 characters", args: ["run", cfg, "--tag", String(repeating: "t", count: 129)],
                  expect: ["--tag", "129 characters"]),
            .init(name: "run --tag with a newline", args: ["run", cfg, "--tag", "paper\nfinal"], expect: ["--tag", "control character"]),
            .init(name: "run --tag with an escape", args: ["run", cfg, "--tag", "a\u{1B}[31m"], expect: ["--tag", "control character"]),
            .init(name: "run --preset with an empty --tag", args: ["run", "--preset", "quick", "--tag", ""], expect: ["--tag"]),
            .init(name: "report --out onto an existing file", args: ["report", "--out", outFile], expect: [outFile, "not a directory"]),
            .init(name: "report --out below a file", args: ["report", "--out", outFile + "/reports"], expect: [outFile + "/reports"]),
            .init(name: "report --out in /proc", args: ["report", "--out", "/proc/moerec-reports"], expect: ["/proc/moerec-reports"]),
            .init(name: "corpus is a FIFO", args: ["run", cfg, "--set", "corpus=\(fifo)"], expect: [fifo, "FIFO"], maxSeconds: 10, timeout: 30),
            .init(name: "task is a FIFO", args: ["run", ft, "--set", "task=\(fifo)"], expect: [fifo, "FIFO"], maxSeconds: 10, timeout: 30),
            .init(name: "corpus is a character device", args: ["run", cfg, "--set", "corpus=/dev/zero"], expect: ["/dev/zero", "not a regular file"],
                  maxSeconds: 10, timeout: 30),
            .init(name: "config file is a FIFO", args: ["run", configFifo], expect: [configFifo, "FIFO"], maxSeconds: 10, timeout: 30),
        ]
        if FaultSuite.full {
            cases.append(.init(name: "full: where with 100000 terms", args: ["runs", "--where", terms(100_000, { "seed=\($0)" }, " or ")],
                               expect: ["comparisons"]))
        }
        runInputCases(cases)
        // The largest filter allowed still runs (SQLite's expression depth is not reached).
        for (shape, join) in [("or", " or "), ("and", " and ")] {
            runCase(.malformedInput, "where: 200 comparisons joined by \(shape) run") { check in
                let out = try Moerec.runLimited(["runs", "--where", terms(200, { $0 % 2 == 0 ? "tag!=t\($0)" : "seed!=\($0 + 1000)" }, join),
                                                 "--format", "csv", "--store", db])
                check.expect(out.status == 0, "\(out)")
            }
        }
        runCase(.malformedInput, "where: typed values of known keys still match") { check in
            let out = try Moerec.runLimited(["runs", "--where", "seed=1 and kind=pretrain and lr>0 and groups!=attn", "--format", "csv",
                                             "--store", db])
            check.expect(out.status == 0 && out.stdout.contains(parent), "expected the base pretraining run: \(out) \(out.stdout)")
        }
    }

    // MARK: Hash prefixes and --where

    func testHashPrefixesAndWhereInjection() throws {
        try prepareStore()
        let ft = try FaultFixtures.finetuneConfig(in: dir, parent: parent, name: "ft.json", steps: 10).path
        var unknown = "fffffffffffff"
        if try StoreState.hashes(db).contains(where: { $0.hasPrefix(unknown) }) { unknown = "eeeeeeeeeeeee" }
        let notPrefix = "is not a hash prefix"
        let cases: [InputCase] = [
            .init(name: "prefix: ambiguous (show abcd)", args: ["show", "abcd"], expect: ["ambiguous", "abcd0", "abcd1"]),
            .init(name: "prefix: ambiguous in diff", args: ["diff", "abcd", String(parent.prefix(12))], expect: ["ambiguous"]),
            .init(name: "prefix: unknown (show)", args: ["show", unknown], expect: ["no run with hash '\(unknown)'"]),
            .init(name: "prefix: unknown (reproduce)", args: ["reproduce", unknown], expect: [unknown]),
            .init(name: "prefix: unknown (verify HASH)", args: ["verify", unknown], expect: [unknown]),
            .init(name: "prefix: SQL injection ' OR 1=1 --", args: ["show", "' OR 1=1 --"], expect: ["' OR 1=1 --", notPrefix]),
            .init(name: "prefix: LIKE wildcard %", args: ["show", "%"], expect: [notPrefix]),
            .init(name: "prefix: LIKE wildcard _", args: ["show", "_"], expect: [notPrefix]),
            .init(name: "prefix: a% in verify", args: ["verify", "a%"], expect: [notPrefix]),
            .init(name: "prefix: wildcards in diff", args: ["diff", "%", "_"], expect: [notPrefix]),
            .init(name: "prefix: statement in reproduce", args: ["reproduce", "abc;drop table runs"], expect: [notPrefix]),
            .init(name: "prefix: empty", args: ["show", ""], expect: [notPrefix]),
            .init(name: "prefix: 65 hex digits", args: ["show", String(repeating: "a", count: 65)], expect: [notPrefix]),
            .init(name: "prefix: 0x1f", args: ["show", "0x1f"], expect: [notPrefix]),
            .init(name: "prefix: full-width digits", args: ["show", "\u{FF10}\u{FF11}"], expect: [notPrefix]),
            .init(name: "parent=' OR ''=' in a fine-tuning run", args: ["run", ft, "--set", "parent=' OR ''='"], expect: ["parent="]),
            .init(name: "parent=abcd (ambiguous) in a fine-tuning run", args: ["run", ft, "--set", "parent=abcd"], expect: ["parent=abcd", "ambiguous"]),
            .init(name: "where: ; DROP TABLE", args: ["runs", "--where", "status=completed; DROP TABLE runs"], expect: ["invalid --where"]),
            .init(name: "where: quote breakout", args: ["runs", "--where", "kind=pretrain' OR '1'='1"], expect: ["invalid --where"]),
            .init(name: "where: 1=1", args: ["runs", "--where", "1=1"], expect: ["invalid --where"]),
            .init(name: "where: or 1=1 tautology", args: ["runs", "--where", "seed=0 or 1=1"], expect: ["invalid --where"]),
            .init(name: "where: UNION SELECT", args: ["runs", "--where", "seed=0 union select * from runs"], expect: ["invalid --where"]),
            .init(name: "where: parenthesis breakout", args: ["runs", "--where", "experts) OR (1=1"], expect: ["invalid --where"]),
            .init(name: "where: SQL function as key", args: ["runs", "--where", "json_extract(config_json,'$.x')=1"], expect: ["invalid --where"]),
            .init(name: "where: comment", args: ["runs", "--where", "status=completed -- and kind=finetune"], expect: ["invalid --where"]),
            .init(name: "where: unbalanced quote with DELETE", args: ["runs", "--where", "tag='; DELETE FROM runs; --"], expect: ["invalid --where"]),
            .init(name: "where: hash with injection", args: ["runs", "--where", "hash=' OR 1=1 --'"], expect: ["invalid --where"]),
            .init(name: "where: invalid status value", args: ["runs", "--where", "status=completed' --"], expect: ["invalid --where"]),
            .init(name: "where: empty", args: ["runs", "--where", ""], expect: ["invalid --where"]),
            .init(name: "where: dangling and", args: ["runs", "--where", "seed=0 and"], expect: ["invalid --where"]),
            // An enumerated key's value must be one of its names: a typo is refused, not an empty listing.
            .init(name: "where: regime that is no regime", args: ["runs", "--where", "regime=nonsense"], expect: ["nonsense", "regime is one of"]),
            .init(name: "where: quoted payload as a regime", args: ["runs", "--where", "regime=\"x' OR '1'='1\""], expect: ["regime is one of"]),
            .init(name: "where: norm that is no norm", args: ["runs", "--where", "norm!=batchnorm"], expect: ["batchnorm", "norm is one of"]),
            .init(name: "where: group that is no group", args: ["runs", "--where", "groups=wings"], expect: ["wings", "groups is one of"]),
        ]
        runInputCases(cases)

        // Injection attempts that are valid expressions: the payload must be bound as a
        // value, so they match nothing and the listing stays empty.
        let quoted = [
            "task=\"x' OR '1'='1\"",
            "task='x'' OR ''1''=''1'",
            "task~\"'); DROP TABLE runs; --\"",
            "corpus~'%'",
            "corpus~'_'",
            "tag=\"' OR 1=1 --\"",
        ]
        for expression in quoted {
            runCase(.malformedInput, "where: bound payload matches nothing: \(expression)") { check in
                let out = try Moerec.runLimited(["runs", "--where", expression, "--format", "csv", "--store", db])
                check.expect(out.status == 0 && !out.crashed, "\(out.exitDescription): \(out.stderr.prefix(200))")
                let rows = out.stdout.split(separator: "\n").dropFirst()
                check.expect(rows.isEmpty, "matched \(rows.count) runs: \(rows.first ?? "")")
                check.expect(try StoreState.whole(storeDir) == snapshot, "the store changed")
            }
        }
        runCase(.malformedInput, "where: the filter still works after the attempts (control)") { check in
            let out = try Moerec.runLimited(["runs", "--where", "status=completed and kind=pretrain", "--format", "csv", "--store", db])
            check.expect(out.status == 0, "\(out)")
            check.expect(out.stdout.split(separator: "\n").count == 2 && out.stdout.contains(parent), "expected exactly the base pretraining run: \(out.stdout)")
            let all = try StoreState.hashes(db)
            check.expect(all.count == 4, "runs in the store: \(all.count), expected 4 (2 real, 2 fixtures)")
        }
    }
}
