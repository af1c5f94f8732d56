import XCTest
import MoeExperiment
import MoeJSON
import MoeStore
import MoeTestSupport
import MoeTrain

final class ConfigResolverTests: XCTestCase {
    func write(_ text: String, _ name: String) throws -> String {
        let dir = TestSupport.temporaryDirectory("config")
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// JSON, YAML, --set, another key order and spelled-out defaults all resolve to the
    /// same canonical config, hence the same run hash.
    func testSameValuesResolveToTheSameCanonicalConfig() throws {
        let json = try write(#"{"steps": 40, "experts": 4, "lr": 0.002}"#, "a.json")
        let yaml = try write("lr: 0.002\nexperts: 4\nsteps: 40\n", "a.yaml")
        let spelled = try write(#"{"lr": 0.002, "experts": 4, "steps": 40, "top_k": 2, "dropout": 0.1, "norm": "layernorm"}"#, "b.json")
        let a = try ConfigResolver.value(of: ConfigResolver.resolve(file: json).config).canonicalString
        let b = try ConfigResolver.value(of: ConfigResolver.resolve(file: yaml).config).canonicalString
        let c = try ConfigResolver.value(of: ConfigResolver.resolve(sets: ["experts=4", "steps=40", "lr=2e-3"]).config).canonicalString
        let d = try ConfigResolver.value(of: ConfigResolver.resolve(file: spelled).config).canonicalString
        XCTAssertEqual(a, b); XCTAssertEqual(a, c); XCTAssertEqual(a, d)
        let e = try ConfigResolver.value(of: ConfigResolver.resolve(sets: ["experts=4", "steps=41", "lr=2e-3"]).config).canonicalString
        XCTAssertNotEqual(a, e)
    }

    /// The canonical form of the default config is pinned: a change here changes every
    /// run hash, so it must be deliberate (and bump `Executor.numericsVersion` if results move).
    func testDefaultConfigHashIsPinned() throws {
        let value = try ConfigResolver.value(of: RunConfig())
        let hash = try RunIdentity.hash(config: value, parent: nil, datasetFingerprint: String(repeating: "0", count: 64), numerics: 1)
        let canonical = try value.canonicalString
        XCTAssertEqual(hash, PinnedHash.defaultConfig, canonical)
    }

    /// Hash stability across upgrades: a key added later, at the default that reproduces
    /// the old behaviour, leaves the pinned hash unchanged; at any other value it counts.
    func testLateKeyAtItsIntroductionDefaultKeepsHashes() throws {
        let today = try ConfigResolver.value(of: RunConfig())
        guard case var .object(upgraded) = today else { return XCTFail("config is not an object") }
        let zeros = String(repeating: "0", count: 64)
        func hash(_ v: JSONValue) throws -> String {
            try RunIdentity.hash(config: v, parent: nil, datasetFingerprint: zeros, numerics: 1)
        }
        // An upgrade that adds `future_patience`, introduced at 0 (off: the old behaviour).
        upgraded["future_patience"] = .int(0)
        let late: [String: JSONValue] = ["future_patience": .int(0)]
        XCTAssertEqual(try hash(ConfigResolver.canonical(.object(upgraded), lateDefaults: late)), PinnedHash.defaultConfig)
        upgraded["future_patience"] = .int(3)
        XCTAssertNotEqual(try hash(ConfigResolver.canonical(.object(upgraded), lateDefaults: late)), PinnedHash.defaultConfig)
        // The real late keys sit at their defaults in a default config, so they are absent.
        for key in RunConfig.lateKeys { XCTAssertNil(today[key], "late key \(key) in the canonical default config") }
        // And a stored config that predates them decodes with their introduction values:
        // the defaults, except where new configs default to something else.
        guard case var .object(stored) = today else { return }
        for key in RunConfig.lateKeys { stored[key] = nil }
        XCTAssertEqual(RunConfig.introductionValues, ["forgetting_eval": "none"])
        var introduced = RunConfig()
        introduced.forgettingEval = .none
        XCTAssertEqual(try ConfigResolver.decode(stored), introduced)
        // A new fine-tuning config measures forgetting, and says so in its hash; one that
        // turns it off hashes as a config from before the key.
        let finetune = try ConfigResolver.resolve(sets: ["kind=finetune", "parent=ab"]).config
        XCTAssertEqual(finetune.forgettingEval, .parent)
        XCTAssertEqual(try ConfigResolver.value(of: finetune)["forgetting_eval"], "parent")
        var off = finetune
        off.forgettingEval = .none
        XCTAssertNil(try ConfigResolver.value(of: off)["forgetting_eval"])
        // On a pretraining config it does nothing and is never hashed.
        XCTAssertEqual(RunConfig().forgettingEval, .parent)
        XCTAssertNil(today["forgetting_eval"])
    }

    /// Every key's type is read off its declaration; enumerated keys take only their names.
    func testKeyTypesComeFromTheDeclaration() throws {
        let types = Dictionary(uniqueKeysWithValues: RunConfig.schema.map { ($0.key, $0.type) })
        XCTAssertEqual(Set(types.keys), Set(RunConfig.keys), "every key has a type")
        XCTAssertEqual(types["lr"], .float)
        XCTAssertEqual(types["capacity_factor_eval"], .float)
        XCTAssertEqual(types["steps"], .int)
        XCTAssertEqual(types["parent"], .optionalString)
        XCTAssertEqual(types["regime"], .choice(["all", "non-moe", "moe", "attention", "ffn", "experts-only", "custom",
                                              "esft-gate", "esft-token", "random-experts"]))
        XCTAssertEqual(types["esft_top_p"], .float)
        XCTAssertEqual(types["esft_sample_tokens"], .int)
        XCTAssertEqual(types["norm"], .choice(["layernorm", "rmsnorm"]))
        XCTAssertEqual(types["schedule"], .choice(["cosine", "linear", "constant"]))
        XCTAssertEqual(types["kind"], .choice(["pretrain", "finetune"]))
        for (set, expected) in [("regime=nonsense", "regime=nonsense: expected one of all, non-moe"),
                                ("schedule=cosin", "schedule=cosin: expected one of cosine"),
                                ("norm=batchnorm", "norm=batchnorm"), ("kind=eval", "kind=eval"),
                                ("groups=attn,mlp", "groups=attn,mlp: expected a list of strings from embed")] {
            XCTAssertThrowsError(try ConfigResolver.resolve(sets: [set])) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
        let file = try write(#"{"kind": "finetune", "parent": "ab", "regime": "moe ", "steps": 2}"#, "e.json")
        XCTAssertThrowsError(try ConfigResolver.resolve(file: file)) { XCTAssertTrue("\($0)".contains("regime=moe "), "\($0)") }
        let custom = ["kind=finetune", "parent=ab", "groups=attn, ffn", "regime=custom"]
        XCTAssertEqual(try ConfigResolver.resolve(sets: custom).config.groups, [.attn, .ffn])
        XCTAssertEqual(RunConfig.architectureKeys, ["vocab", "context", "d_model", "layers", "heads", "d_ff", "experts",
                                                    "top_k", "moe_every", "norm"])
    }

    /// A key of the other kind of run is refused unless it sits at its default (as in a
    /// resolved config written out in full, whose hash it does not change).
    func testKeysOfTheOtherKindAreRefused() throws {
        for (sets, expected) in [(["regime=moe"], "regime: applies to finetune runs only"),
                                 (["task=wn-pos"], "task: applies to finetune runs only"),
                                 (["train_size=256"], "train_size"),
                                 (["kind=finetune", "parent=ab", "corpus=x.jsonl"], "corpus: applies to pretrain runs only"),
                                 (["kind=finetune", "parent=ab", "eval_batches=3"], "eval_batches")] {
            XCTAssertThrowsError(try ConfigResolver.resolve(sets: sets)) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
        let atDefaults = try ConfigResolver.resolve(sets: ["regime=all", "groups=", "train_size=4096"]).config
        XCTAssertEqual(try ConfigResolver.value(of: atDefaults), try ConfigResolver.value(of: RunConfig()))
        let yaml = try write("steps: 0x6\n", "hex.yaml")
        XCTAssertThrowsError(try ConfigResolver.resolve(file: yaml)) { XCTAssertTrue("\($0)".contains("steps=0x6: expected an integer"), "\($0)") }
        for form in ["6_0", "0o6", "+0x6", "1_000"] {
            let f = try write("steps: \(form)\n", "n.yaml")
            XCTAssertThrowsError(try ConfigResolver.resolve(file: f), form)
        }
        let quoted = try write("steps: '60'\n", "q.yaml")
        XCTAssertThrowsError(try ConfigResolver.resolve(file: quoted)) { XCTAssertTrue("\($0)".contains("expected an integer"), "\($0)") }
        let plain = try write("steps: 60\nlr: 2.5e-3\nnorm: rmsnorm\n", "p.yaml")
        let c = try ConfigResolver.resolve(file: plain).config
        XCTAssertEqual(c.steps, 60); XCTAssertEqual(c.lr, 2.5e-3); XCTAssertEqual(c.norm, .rmsnorm)
        let duplicate = try write("steps: 6\nsteps: 7\n", "d.yaml")
        XCTAssertThrowsError(try ConfigResolver.resolve(file: duplicate)) { XCTAssertTrue("\($0)".contains("duplicate") && "\($0)".contains("'steps'"), "\($0)") }
    }

    func testErrorsNameKeyAndValue() throws {
        let cases: [([String], String)] = [
            (["stepz=3"], "unknown key 'stepz'"),
            (["steps=abc"], "steps=abc"),
            (["lr=nan"], "lr=nan"),
            (["experts"], "expected key=value"),
        ]
        for (sets, expected) in cases {
            XCTAssertThrowsError(try ConfigResolver.resolve(sets: sets)) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
        let wrongType = try write(#"{"steps": "ten"}"#, "w.json")
        XCTAssertThrowsError(try ConfigResolver.resolve(file: wrongType)) { XCTAssertTrue("\($0)".contains("steps=ten"), "\($0)") }
        let badYaml = try write("steps: [1, 2\n", "bad.yaml")
        XCTAssertThrowsError(try ConfigResolver.resolve(file: badYaml)) { XCTAssertTrue("\($0)".contains("invalid YAML"), "\($0)") }
        var c = RunConfig(); c.experts = 2; c.topK = 3
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("top_k=3"), "\($0)") }
    }

    /// `periodic_eval_examples` needs `test_eval: selected` (the other modes measure the
    /// selected step on the periodic evaluations) and at most `eval_examples`.
    func testPeriodicEvaluationSizeIsChecked() throws {
        let base = ["kind=finetune", "parent=ab", "eval_examples=4096"]
        for (sets, expected) in [(["periodic_eval_examples=1024"], "periodic_eval_examples=1024: applies with test_eval: selected, not last"),
                                 (["test_eval=best", "periodic_eval_examples=1024"], "not best"),
                                 (["test_eval=selected", "periodic_eval_examples=5000"], "periodic_eval_examples=5000: must be in 0...eval_examples = 4096"),
                                 (["test_eval=selected", "periodic_eval_examples=-1"], "periodic_eval_examples=-1")] {
            XCTAssertThrowsError(try ConfigResolver.resolve(sets: base + sets).config.validate()) {
                XCTAssertTrue("\($0)".contains(expected), "\($0)")
            }
        }
        XCTAssertThrowsError(try ConfigResolver.resolve(sets: ["periodic_eval_examples=8"])) {
            XCTAssertTrue("\($0)".contains("periodic_eval_examples: applies to finetune runs only"), "\($0)")
        }
        let c = try ConfigResolver.resolve(sets: base + ["test_eval=selected", "periodic_eval_examples=1024"]).config
        XCTAssertEqual(c.periodicEvalExamples, 1024)
        XCTAssertEqual(try ConfigResolver.value(of: c)["periodic_eval_examples"], 1024)
        XCTAssertEqual(try ConfigResolver.value(of: c)["test_eval"], "selected")
    }

    /// `test_examples`: 0 (the test evaluations cover `eval_examples`) or at least
    /// `eval_examples`, fine-tuning only; a config without it keeps its hash.
    func testTestExampleCountIsChecked() throws {
        let base = ["kind=finetune", "parent=ab", "eval_examples=4096"]
        XCTAssertThrowsError(try ConfigResolver.resolve(sets: base + ["test_examples=1000"]).config.validate()) {
            XCTAssertTrue("\($0)".contains("test_examples=1000: must be 0 (eval_examples) or at least eval_examples = 4096"), "\($0)")
        }
        XCTAssertThrowsError(try ConfigResolver.resolve(sets: ["test_examples=8192"])) {
            XCTAssertTrue("\($0)".contains("test_examples: applies to finetune runs only"), "\($0)")
        }
        let plain = try ConfigResolver.resolve(sets: base).config
        XCTAssertEqual(plain.settings.testExampleLimit, 4096)
        XCTAssertNil(try ConfigResolver.value(of: plain)["test_examples"], "a late key at its default enters the stored config")
        let c = try ConfigResolver.resolve(sets: base + ["test_examples=16384"]).config
        try c.validate()
        XCTAssertEqual(c.settings.testExampleLimit, 16384)
        XCTAssertEqual(try ConfigResolver.value(of: c)["test_examples"], 16384)
        XCTAssertNotEqual(try ConfigResolver.value(of: c), try ConfigResolver.value(of: plain))
    }

    func testStudyCellsShareParentsAndFixDenseTopK() throws {
        let study = try Presets.study(named: "paper")
        let cells = try study.cells()
        XCTAssertEqual(study.parts.map(\.name), ["main", "lr", "dropout", "parents", "experts-4"])
        XCTAssertEqual(cells.count, 8 * 5 + 3 + 1 + 4 * 2 * 2 + 2)
        XCTAssertEqual(cells.filter { $0.part == 0 }.count, 40)
        let dense = cells.first { $0.config.experts == 1 }!
        XCTAssertEqual(dense.config.topK, 1)
        XCTAssertEqual(dense.parent?.topK, 1)
        XCTAssertEqual(dense.parent?.experts, 1)
        func key(_ parent: RunConfig?) -> String? { parent.flatMap { try? ConfigResolver.value(of: $0).canonicalString } }
        let parents = Set(cells.compactMap { key($0.parent) })
        XCTAssertEqual(parents.count, 10, "the main parent; four pretraining seeds each of the dense and the 8-expert model, one of the 4-expert")
        XCTAssertEqual(Set(cells.compactMap { $0.parent?.seed }), [0, 1, 2, 3])
        XCTAssertEqual(cells.filter { $0.parent?.experts == 4 }.map { $0.parent?.seed }, [0, 0])
        // The main, lr and dropout parts fine-tune one 12,000-step parent; the parents and
        // experts-4 parts' parents stop at 6,000 steps, otherwise pretrained alike.
        let mainAll = try XCTUnwrap(cells.first { $0.part == 0 && $0.config.regime.rawValue == "all" })
        XCTAssertEqual(mainAll.parent?.steps, 12000)
        XCTAssertEqual(Set(cells.filter { $0.part <= 2 }.compactMap { key($0.parent) }), [key(mainAll.parent)])
        XCTAssertEqual(Set(cells.filter { $0.part >= 3 }.compactMap { $0.parent?.steps }), [6000])
        let partAll = try XCTUnwrap(cells.first { $0.part == 3 && $0.parent?.experts == 8 && $0.parent?.seed == 0 && $0.config.trainSize == 4096 })
        var shortened = try XCTUnwrap(mainAll.parent)
        shortened.steps = 6000
        XCTAssertEqual(key(partAll.parent), key(shortened))
        // The pretraining seed is the parent's alone: the cells keep their fine-tuning seed.
        XCTAssertEqual(Set(cells.filter { $0.part == 3 }.map(\.config.seed)), [0])
        // Periodic evaluations pick the step on 1,024 examples; the selected step is measured
        // on 4,096 of each split.
        XCTAssertTrue(cells.allSatisfy { $0.config.testEval == .selected && $0.config.periodicEvalExamples == 1024
                                         && $0.config.evalExamples == 4096 && $0.config.settings.testExampleLimit == 4096 })
        // Fine-tuning runs without dropout; the dropout part's one run (seed 0, `all`, the
        // main cell otherwise) keeps the evidence for that choice.
        let withDropout = cells.filter { $0.config.dropout != 0 || $0.config.expertDropout != 0 }
        XCTAssertEqual(withDropout.map(\.part), [2])
        XCTAssertEqual(withDropout.first?.config.dropout, 0.1)
        XCTAssertEqual(withDropout.first?.config.expertDropout, 0.1)
        XCTAssertEqual(key(withDropout.first?.parent), key(mainAll.parent))
    }

    func testSetOnTheParentChangesEveryParentAndAnAxisStillWins() throws {
        var study = try Presets.study(named: "paper")
        try study.setParentKey("parent.steps=24000")
        try study.setParentKey("parent.lr=0.001")
        let cells = try study.cells()
        XCTAssertEqual(Set(cells.filter { $0.part <= 2 }.compactMap { $0.parent?.steps }), [24000])
        XCTAssertEqual(Set(cells.filter { $0.part >= 3 }.compactMap { $0.parent?.steps }), [6000], "the parts' axis wins")
        XCTAssertEqual(Set(cells.compactMap { $0.parent?.lr }), [0.001])
        XCTAssertEqual(Set(cells.map(\.config.steps)), [600], "the cells' own steps are untouched")
        // The parents part's parent.seed axis overrides a parent.seed set on the base.
        try study.setParentKey("parent.seed=7")
        let seeds = Set(try study.cells().filter { $0.part == 3 }.compactMap { $0.parent?.seed })
        XCTAssertEqual(seeds, [0, 1, 2, 3])
        XCTAssertEqual(Set(try study.cells().filter { $0.part == 0 }.compactMap { $0.parent?.seed }), [7])
        let refused: [(String, String)] = [
            ("parent.wings=1", "--set parent.wings: unknown key"),
            ("parent.regime=moe", "--set parent.regime: regime is not a key of a pretraining parent"),
            ("parent.kind=finetune", "--set parent.kind: kind is not a key of a pretraining parent"),
            ("parent.steps=abc", "--set parent.steps=abc: expected an integer"),
            ("parent.norm=bogus", "--set: parent.norm=bogus: expected one of"),
            ("parent.steps", "--set parent.steps: expected parent.KEY=VALUE"),
        ]
        for (item, message) in refused {
            var copy = try Presets.study(named: "paper")
            XCTAssertThrowsError(try copy.setParentKey(item), item) { XCTAssertTrue("\($0)".contains(message), "\(item): \($0)") }
            XCTAssertEqual(copy.parent?["steps"], 12000, "a refused --set changed the parent: \(item)")
        }
        var orphan = Study(name: "s", base: ["kind": "finetune"], parent: nil, grid: [("seed", [1])])
        XCTAssertThrowsError(try orphan.setParentKey("parent.steps=10")) {
            XCTAssertTrue("\($0)".contains("no parent config"), "\($0)")
        }
    }

    func testParentAxesSetOnlyParentKeys() throws {
        let base: [String: JSONValue] = ["kind": "finetune", "task": "wn-supersense"]
        let parent: [String: JSONValue] = ["kind": "pretrain", "steps": 10]
        let study = Study(name: "s", base: base, parent: parent, grid: [("parent.steps", [10, 20]), ("seed", [3])])
        let cells = try study.cells()
        XCTAssertEqual(cells.map { $0.parent?.steps }, [10, 20])
        XCTAssertEqual(cells.map(\.config.seed), [3, 3])
        XCTAssertEqual(cells.map(\.config.steps), [RunConfig().steps, RunConfig().steps], "the cell's own steps are untouched")
        let refused: [(Study.Axis, String)] = [
            (("parent.regime", ["moe"]), "not a key of a pretraining parent"),
            (("parent.kind", ["finetune"]), "not a key of a pretraining parent"),
            (("parent.wings", [1]), "unknown key"),
        ]
        for (axis, message) in refused {
            XCTAssertThrowsError(try Study(name: "s", base: base, parent: parent, grid: [axis]).cells()) {
                XCTAssertTrue("\($0)".contains(message), "\(axis.key): \($0)")
            }
        }
        XCTAssertThrowsError(try Study(name: "s", base: base, parent: nil, grid: [("parent.seed", [1])]).cells()) {
            XCTAssertTrue("\($0)".contains("no parent config"), "\($0)")
        }
    }
}

enum PinnedHash {
    static let defaultConfig = "9808ed0d5522d5e828acfa4d30b89e59b2e9265f91603c10c310a47f0c2bbec1"
}
