import Foundation
import MoeJSON
import MoeMetricNames
import MoeStore
import Yams

/// Runs trained elsewhere, read into `ImportedRun`s: moerec's own run log (JSON Lines),
/// a Hugging Face Trainer's `trainer_state.json`, and MLflow tracking stores (the `mlruns/`
/// file store and the SQLite backend). Everything is read and checked before anything is
/// written: bad input is an `InputError` naming the file, line or key.
///
/// Every imported fine-tuning run carries the study keys the reports group by (`task`,
/// `regime`, `experts`, `seed`, `train_size`) and has a parent: a run of this store named
/// by its full hash, or a pretrained model named by anything else, recorded once as an
/// imported `pretrain` run with config `{"kind":"pretrain","model":NAME}`.
public enum RunImport {
    public enum Format: String, CaseIterable, Sendable {
        /// moerec's run log: a header line with the config, then one line per metric point.
        case runLog = "run-log"
        /// A Hugging Face Trainer output directory (its `trainer_state.json`).
        case trainer
        /// An MLflow tracking store: an `mlruns/` directory or an SQLite database file.
        case mlflow
    }

    public struct Options: Sendable {
        /// `--set key=value`: config keys added or replaced, after `renames`.
        public var set: [(key: String, value: String)] = []
        /// `--map from=to`: an MLflow param or config key renamed to a config key, or, when
        /// `to` is `split/name`, a logged metric key stored under that split and name.
        public var map: [(from: String, to: String)] = []
        /// `--parent NAME`: what the runs fine-tuned (a run hash of this store, or a model name).
        public var parent: String?
        /// `--experiment NAME`: MLflow runs of this experiment only.
        public var experiment: String?
        /// `--allow-nan`: NaN values are stored as missing values instead of refused.
        public var allowNaN = false

        public init() {}
    }

    /// What `read` found: the runs to record (parents first) and what it passed over.
    public struct Result: Sendable {
        public var runs: [ImportedRun] = []
        /// One line per source run not imported, saying why (deleted, still running).
        public var skipped: [String] = []
    }

    /// The keys the regimes, experts and overfitting tables group by, with their types.
    public static let studyKeys: [(key: String, kind: StudyKeyKind)] = [
        ("task", .text), ("regime", .text), ("experts", .positiveInteger), ("seed", .integer), ("train_size", .positiveInteger),
    ]
    public enum StudyKeyKind: Sendable { case text, integer, positiveInteger }

    /// The dataset fingerprint of imported runs: moerec did not read their data.
    public static let externalDataset = "external"
    /// The parent model name when neither the source nor `--parent` names one.
    public static let unnamedParent = "unnamed"

    /// Reads every path in `format` and returns the runs to import.
    public static func read(_ format: Format, paths: [String], options: Options) throws -> Result {
        guard !paths.isEmpty else { throw InputError("give at least one path to import") }
        var sources: [SourceRun] = []
        var result = Result()
        for path in paths {
            guard FileManager.default.fileExists(atPath: path) else { throw InputError("\(path): no such file or directory") }
            switch format {
            case .runLog: sources.append(try readRunLog(path))
            case .trainer: sources.append(try readTrainerState(path, options: options))
            case .mlflow:
                let (runs, skipped) = FileManager.default.isDirectory(path) ? try readMLflowFiles(path, options: options)
                                                            : try readMLflowDatabase(path, options: options)
                sources += runs
                result.skipped += skipped
            }
        }
        var parents: [String: ImportedRun] = [:]
        var children: [ImportedRun] = []
        for source in sources {
            let (parent, run) = try finish(source, options: options)
            if let parent { parents[parent.hash] = parent }
            children.append(run)
        }
        result.runs = parents.values.sorted { $0.hash < $1.hash } + children
        return result
    }

    // MARK: - From a source's run to an ImportedRun

    /// A run as a source holds it, before the options and checks apply.
    struct SourceRun {
        /// Format and location, e.g. "trainer out/all-seed1/trainer_state.json".
        var source: String
        var config: [String: JSONValue]
        var parent: String?
        var status: RunStatus
        var failureReason: String?
        /// Each point with where it was read, for messages.
        var points: [(point: ImportedRun.Point, location: String)]
    }

    static func finish(_ run: SourceRun, options: Options) throws -> (parent: ImportedRun?, run: ImportedRun) {
        var config: [String: JSONValue] = [:]
        let renames = Dictionary(options.map.filter { !$0.to.contains("/") }.map { ($0.from, $0.to) }, uniquingKeysWith: { $1 })
        for (key, value) in run.config {
            let target = renames[key] ?? key
            if config[target] != nil { throw InputError("\(run.source): two keys become '\(target)' (check --map)") }
            config[target] = value
        }
        for (key, value) in options.set { config[key] = scalar(value) }
        var parentName = options.parent ?? run.parent
        if let named = config.removeValue(forKey: "parent") {
            guard let name = named.stringValue, !name.isEmpty else { throw InputError("\(run.source): parent \(shown(named)) is not a name") }
            parentName = options.parent ?? name
        }
        if let kind = config["kind"], kind != .string("finetune") {
            throw InputError("\(run.source): kind is \(shown(kind)); an imported run is a fine-tuning run (kind finetune)")
        }
        config["kind"] = .string("finetune")
        for (key, kind) in studyKeys {
            guard let value = config[key] else {
                throw InputError("\(run.source): the study key '\(key)' is missing (give it with --set \(key)=…)")
            }
            switch kind {
            case .text:
                guard let text = value.stringValue, !text.isEmpty else { throw InputError("\(run.source): \(key) is \(shown(value)), not a name") }
            case .integer:
                guard value.intValue != nil else { throw InputError("\(run.source): \(key) is \(shown(value)), not an integer") }
            case .positiveInteger:
                guard let n = value.intValue, n >= 1 else { throw InputError("\(run.source): \(key) is \(shown(value)), not a positive integer") }
            }
        }
        for (point, location) in run.points where !point.value.isFinite {
            guard point.value.isNaN, options.allowNaN else {
                throw InputError("\(location): \(point.split)/\(point.name) is \(point.value) at step \(point.step)"
                                 + (point.value.isNaN ? " (--allow-nan stores NaN as a missing value)" : ""))
            }
        }
        let name = parentName ?? unnamedParent
        var parent: ImportedRun?
        let parentHash: String
        if RunIdentity.isValidHash(name) {
            parentHash = name
        } else {
            let model = try ImportedRun(kind: .pretrain, config: .object(["kind": .string("pretrain"), "model": .string(name)]),
                                        parentHash: nil, datasetFingerprint: externalDataset, status: .completed,
                                        source: "model \(name), named as a parent by an import", points: [])
            parent = model
            parentHash = model.hash
        }
        config["parent"] = .string(parentHash)
        do {
            let imported = try ImportedRun(kind: .finetune, config: .object(config), parentHash: parentHash,
                                           datasetFingerprint: externalDataset, status: run.status,
                                           failureReason: run.failureReason, source: run.source, points: run.points.map(\.point))
            return (parent, imported)
        } catch let error as StoreError {
            throw InputError("\(run.source): \(error)")
        }
    }

    /// A `--set` value or an MLflow param as JSON: a plain decimal integer, a number, true or
    /// false, else the text itself.
    static func scalar(_ text: String) -> JSONValue {
        let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        if !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let n = Int64(text) { return .int(n) }
        if text.utf8.allSatisfy({ "0123456789+-.eE".utf8.contains($0) }), let d = Double(text), d.isFinite { return .double(d) }
        if text == "true" || text == "false" { return .bool(text == "true") }
        return .string(text)
    }

    /// Where a logged key is stored: `--map key=split/name` first, then the prefixes
    /// `eval_`/`val_`/`validation_` (split val), `test_` (test) and `train_` (train), with
    /// `/` in place of `_` as well; `…runtime` and `…_per_second` keys go to timing; a key
    /// without a prefix is a training-step value (split step; `learning_rate` is `lr`).
    /// `accuracy` is stored as `acc`, moerec's name.
    static func metricKey(_ key: String, options: Options) -> (split: String, name: String) {
        if let mapped = options.map.last(where: { $0.from == key && $0.to.contains("/") }) {
            let parts = mapped.to.split(separator: "/", maxSplits: 1)
            return (String(parts[0]), String(parts[1]))
        }
        if key.hasSuffix("runtime") || key.hasSuffix("_per_second") { return (Split.timing, key) }
        let prefixes: [(String, String)] = [("eval", Split.val), ("val", Split.val), ("validation", Split.val),
                                            ("test", Split.test), ("train", Split.train)]
        for (prefix, split) in prefixes {
            for separator in ["_", "/"] where key.hasPrefix(prefix + separator) && key.count > prefix.count + 1 {
                let name = String(key.dropFirst(prefix.count + 1))
                return (split, name == "accuracy" ? MetricName.accuracy : name)
            }
        }
        if key == "learning_rate" { return (Split.step, MetricName.learningRate) }
        return (Split.step, key == "accuracy" ? MetricName.accuracy : key)
    }

    /// Points keyed by (split, name, step), the last one logged winning: Trainer and MLflow
    /// may log the same key at the same step more than once (MLflow shows the latest).
    static func lastLogged(_ points: [(point: ImportedRun.Point, location: String)]) -> [(point: ImportedRun.Point, location: String)] {
        var index: [String: Int] = [:]
        var kept: [(point: ImportedRun.Point, location: String)] = []
        for entry in points {
            if let i = index[entry.point.key] { kept[i] = entry } else {
                index[entry.point.key] = kept.count
                kept.append(entry)
            }
        }
        return kept
    }

    /// A value as JSON text, for messages: `"eight"`, `1.5`.
    static func shown(_ value: JSONValue) -> String { (try? value.canonicalString) ?? value.display }

    static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }

    // MARK: - moerec's run log

    /// A run log: line 1 `{"moerec_run_log":1,"config":{…},"parent":"…","status":"completed"}`
    /// (`parent`, `status` and `failure_reason` optional), then one
    /// `{"step":S,"split":"val","name":"acc","value":V}` per point (`value` null for NaN).
    static func readRunLog(_ path: String) throws -> SourceRun {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw InputError("\(path): cannot read it as UTF-8 text: \(error.localizedDescription)")
        }
        var run: SourceRun?
        var seen: [String: Int] = [:]
        for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = offset + 1
            let location = "\(path):\(lineNumber)"
            guard !line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) else { continue }
            let value: JSONValue
            do { value = try JSONValue(parsing: String(line)) } catch {
                throw InputError("\(location): not a JSON object: \(error) (NaN is written null)")
            }
            guard case let .object(object) = value else { throw InputError("\(location): not a JSON object") }
            guard var current = run else {
                guard object["moerec_run_log"] == .int(1) else {
                    throw InputError("\(location): the first line is the header {\"moerec_run_log\": 1, \"config\": {…}}")
                }
                let known: Set = ["moerec_run_log", "config", "parent", "status", "failure_reason"]
                if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
                    throw InputError("\(location): unknown header key '\(unknown)' (known: \(known.sorted().joined(separator: ", ")))")
                }
                guard case let .object(config)? = object["config"] else { throw InputError("\(location): the header has no \"config\" object") }
                let status: RunStatus
                switch object["status"]?.stringValue ?? "completed" {
                case "completed": status = .completed
                case "failed": status = .failed
                case "interrupted": status = .interrupted
                default: throw InputError("\(location): status \(shown(object["status"]!)) is not completed, failed or interrupted")
                }
                if let parent = object["parent"], parent.stringValue == nil { throw InputError("\(location): parent \(shown(parent)) is not a name") }
                let reason = object["failure_reason"]?.stringValue ?? (status == .failed ? "failed before it was imported" : nil)
                run = SourceRun(source: "run-log \(absolute(path))", config: config, parent: object["parent"]?.stringValue,
                                status: status, failureReason: reason, points: [])
                continue
            }
            let known: Set = ["step", "split", "name", "value"]
            if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
                throw InputError("\(location): unknown key '\(unknown)' in a metric line (keys: step, split, name, value)")
            }
            guard let step = object["step"]?.intValue else { throw InputError("\(location): the metric has no integer \"step\"") }
            guard step >= 0 else { throw InputError("\(location): step \(step) is negative") }
            guard let split = object["split"]?.stringValue, !split.isEmpty else { throw InputError("\(location): the metric has no \"split\"") }
            guard let name = object["name"]?.stringValue, !name.isEmpty else { throw InputError("\(location): the metric has no \"name\"") }
            let number: Double
            switch object["value"] {
            case .null?: number = .nan
            case let v? where v.doubleValue != nil: number = v.doubleValue!
            default: throw InputError("\(location): the metric has no numeric \"value\" (null for NaN)")
            }
            let point = ImportedRun.Point(step: Int(step), split: split, name: name, value: number)
            if let earlier = seen[point.key] { throw InputError("\(location): \(split)/\(name) at step \(step) is already on line \(earlier)") }
            seen[point.key] = lineNumber
            current.points.append((point, location))
            run = current
        }
        guard let run else { throw InputError("\(path): empty; a run log starts with its header line") }
        return run
    }

    // MARK: - Hugging Face Trainer

    /// `trainer_state.json` of a Trainer output directory (or the file itself). Its
    /// `log_history` entries each carry a `step`; the entry with `train_runtime` closes a
    /// finished training (its keys go to the info and timing splits), so a state without it
    /// is an interrupted run. The config is `steps` (`max_steps`) plus `--set`.
    static func readTrainerState(_ path: String, options: Options) throws -> SourceRun {
        let file = FileManager.default.isDirectory(path) ? (path as NSString).appendingPathComponent("trainer_state.json") : path
        guard FileManager.default.fileExists(atPath: file) else {
            throw InputError("\(path): no trainer_state.json (a Trainer writes it with save_state() and in every checkpoint)")
        }
        let value: JSONValue
        do { value = try JSONValue(parsing: try Data(contentsOf: URL(fileURLWithPath: file))) } catch let error as JSONError {
            throw InputError("\(file): not JSON: \(error)")
        }
        guard case let .array(history)? = value["log_history"] else { throw InputError("\(file): no \"log_history\" array") }
        var points: [(point: ImportedRun.Point, location: String)] = []
        var finished = false
        for (i, entry) in history.enumerated() {
            guard case let .object(members) = entry else { throw InputError("\(file): log_history[\(i)] is not an object") }
            guard let step = members["step"]?.intValue, step >= 0 else {
                throw InputError("\(file): log_history[\(i)] has no step")
            }
            let summary = members["train_runtime"] != nil
            finished = finished || summary
            for (key, v) in members.sorted(by: { $0.key < $1.key }) where key != "step" {
                guard let number = v.doubleValue else {
                    if case .null = v { continue }
                    throw InputError("\(file): log_history[\(i)].\(key) is \(shown(v)), not a number")
                }
                var (split, name) = metricKey(key, options: options)
                if summary, split != Split.timing, !options.map.contains(where: { $0.from == key }) { (split, name) = (Split.info, key) }
                points.append((ImportedRun.Point(step: Int(step), split: split, name: name, value: number),
                               "\(file): log_history[\(i)].\(key)"))
            }
        }
        var config: [String: JSONValue] = [:]
        if let steps = value["max_steps"]?.intValue, steps > 0 { config["steps"] = .int(steps) }
        return SourceRun(source: "trainer \(absolute(file))", config: config, parent: nil,
                         status: finished ? .completed : .interrupted, failureReason: nil, points: lastLogged(points))
    }

    // MARK: - MLflow

    /// An MLflow run status: FINISHED is completed, FAILED failed, KILLED interrupted; a
    /// RUNNING or SCHEDULED run is not imported (nil). The file store writes the numbers of
    /// MLflow's RunStatus enum.
    static func status(mlflow: String) -> RunStatus? {
        switch mlflow {
        case "FINISHED", "3": return .completed
        case "FAILED", "4": return .failed
        case "KILLED", "5": return .interrupted
        default: return nil
        }
    }

    static func mlflowRun(source: String, status mlflowStatus: String, params: [(key: String, value: String)],
                          metrics: [(key: String, step: Int64, value: Double, location: String)], options: Options) throws -> SourceRun {
        guard let status = status(mlflow: mlflowStatus) else { throw InputError("\(source): status \(mlflowStatus)") }
        var config: [String: JSONValue] = [:]
        for (key, value) in params { config[key] = scalar(value) }
        let points = try metrics.map { m -> (point: ImportedRun.Point, location: String) in
            guard m.step >= 0 else { throw InputError("\(m.location): step \(m.step) is negative") }
            let (split, name) = metricKey(m.key, options: options)
            return (ImportedRun.Point(step: Int(m.step), split: split, name: name, value: m.value), m.location)
        }
        return SourceRun(source: source, config: config, parent: nil, status: status,
                         failureReason: status == .failed ? "FAILED in MLflow" : nil, points: lastLogged(points))
    }

    static func readMLflowDatabase(_ path: String, options: Options) throws -> ([SourceRun], [String]) {
        let rows: [MLflowRun]
        do { rows = try MLflowDatabase.runs(path: path) } catch let error as StoreError {
            throw InputError("\(error)")
        }
        var runs: [SourceRun] = [], skipped: [String] = []
        let database = absolute(path)
        for row in rows where options.experiment == nil || row.experiment == options.experiment {
            let source = "mlflow-sqlite \(database) run \(row.runId)"
            if row.lifecycleStage == "deleted" { skipped.append("\(source): deleted"); continue }
            if status(mlflow: row.status) == nil { skipped.append("\(source): \(row.status), not finished"); continue }
            // Metrics arrive ordered by (key, step, timestamp): the last one at a step is the latest.
            let metrics = row.metrics.map { m in
                (key: m.key, step: m.step, value: m.value, location: "\(source) metric \(m.key) step \(m.step)")
            }
            runs.append(try mlflowRun(source: source, status: row.status, params: row.params, metrics: metrics, options: options))
        }
        return (runs, skipped)
    }

    /// An `mlruns/` directory: `<experiment>/meta.yaml`, `<experiment>/<run>/meta.yaml`,
    /// `params/<key>` (the value) and `metrics/<key>` (lines `timestamp value step`); keys
    /// with `/` are subdirectories. A deleted run stays in place with `lifecycle_stage:
    /// deleted` in its meta.yaml; `.trash` holds deleted experiments.
    static func readMLflowFiles(_ root: String, options: Options) throws -> ([SourceRun], [String]) {
        let fm = FileManager.default
        let base = URL(fileURLWithPath: root)
        func yaml(_ url: URL) throws -> [String: Any] {
            do {
                let text = try String(contentsOf: url, encoding: .utf8)
                return (try Yams.load(yaml: text) as? [String: Any]) ?? [:]
            } catch { throw InputError("\(url.path): not readable YAML: \(error)") }
        }
        func text(_ any: Any?) -> String? {
            switch any {
            case let s as String: return s
            case let n as Int: return String(n)
            default: return nil
            }
        }
        /// Files under `directory`, with their paths relative to it (the MLflow key).
        func files(under directory: URL) -> [(key: String, url: URL)] {
            guard let walker = fm.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
            var found: [(String, URL)] = []
            for case let url as URL in walker where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                found.append((String(url.path.dropFirst(directory.path.count + 1)), url))
            }
            return found.sorted { $0.0 < $1.0 }
        }
        var experiments = try fm.contentsOfDirectory(atPath: root).filter { $0 != ".trash" && !$0.hasPrefix(".") }.sorted()
        experiments = experiments.filter { fm.fileExists(atPath: base.appendingPathComponent($0).appendingPathComponent("meta.yaml").path) }
        guard !experiments.isEmpty else {
            throw InputError("\(root): not an MLflow file store (no <experiment>/meta.yaml below it; give the mlruns directory)")
        }
        var runs: [SourceRun] = [], skipped: [String] = []
        for experiment in experiments {
            let directory = base.appendingPathComponent(experiment)
            let meta = try yaml(directory.appendingPathComponent("meta.yaml"))
            if let wanted = options.experiment, text(meta["name"]) != wanted { continue }
            if text(meta["lifecycle_stage"]) == "deleted" { continue }
            for runId in try fm.contentsOfDirectory(atPath: directory.path).sorted() {
                let runDirectory = directory.appendingPathComponent(runId)
                let metaFile = runDirectory.appendingPathComponent("meta.yaml")
                guard fm.fileExists(atPath: metaFile.path) else { continue }
                let runMeta = try yaml(metaFile)
                let source = "mlflow-file \(absolute(runDirectory.path))"
                let status = text(runMeta["status"]) ?? "?"
                if text(runMeta["lifecycle_stage"]) == "deleted" { skipped.append("\(source): deleted"); continue }
                if RunImport.status(mlflow: status) == nil { skipped.append("\(source): status \(status), not finished"); continue }
                var params: [(key: String, value: String)] = []
                for (key, url) in files(under: runDirectory.appendingPathComponent("params")) {
                    guard let value = try? String(contentsOf: url, encoding: .utf8) else { throw InputError("\(url.path): not UTF-8 text") }
                    params.append((key, value))
                }
                var metrics: [(key: String, step: Int64, timestamp: Int64, value: Double, location: String)] = []
                for (key, url) in files(under: runDirectory.appendingPathComponent("metrics")) {
                    guard let content = try? String(contentsOf: url, encoding: .utf8) else { throw InputError("\(url.path): not UTF-8 text") }
                    for (n, line) in content.split(separator: "\n").enumerated() {
                        let fields = line.split(separator: " ")
                        let location = "\(url.path):\(n + 1)"
                        // `timestamp value`, `timestamp value step`, or MLflow 3's five fields
                        // `timestamp value step dataset_name dataset_digest`.
                        guard [2, 3, 5].contains(fields.count), let timestamp = Int64(fields[0]), let value = Double(fields[1]),
                              let step = fields.count >= 3 ? Int64(fields[2]) : 0
                        else { throw InputError("\(location): not a metric line 'timestamp value step'") }
                        metrics.append((key, step, timestamp, value, location))
                    }
                }
                // The latest value at a step wins, as MLflow shows it.
                metrics.sort { ($0.key, $0.step, $0.timestamp) < ($1.key, $1.step, $1.timestamp) }
                runs.append(try mlflowRun(source: source, status: status, params: params,
                                          metrics: metrics.map { ($0.key, $0.step, $0.value, $0.location) }, options: options))
            }
        }
        return (runs, skipped)
    }
}

extension FileManager {
    /// Whether `path` exists and is a directory (following symbolic links).
    func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}
