import Foundation

/// Runs the built `moerec` binary, as a user would, for the CLI and fault tests.
public enum CLI {
    public struct Result {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// The binary next to the test bundle (`swift build -c release --build-tests` builds both).
    public static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["MOEREC_BIN"] { return URL(fileURLWithPath: path) }
        let bundle = Bundle.main.bundleURL   // …/.build/<triple>/release
        let candidates = [bundle.appendingPathComponent("moerec"),
                          bundle.deletingLastPathComponent().appendingPathComponent("moerec"),
                          URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("moerec")]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    /// Runs `moerec args…` (or another `executable`) to completion; `environment` adds to
    /// (and overrides) the process's.
    @discardableResult
    public static func run(_ args: [String], environment: [String: String] = [:], directory: URL? = nil,
                           timeout: TimeInterval = 600, executable: URL = binary) throws -> Result {
        try start(args, environment: environment, directory: directory, executable: executable).wait(timeout: timeout)
    }

    /// A started process whose output is collected in temporary files (no pipe can fill up).
    public final class Running {
        public let process: Process
        let outURL: URL, errURL: URL
        init(process: Process, outURL: URL, errURL: URL) { self.process = process; self.outURL = outURL; self.errURL = errURL }
        public var pid: Int32 { process.processIdentifier }

        public func wait(timeout: TimeInterval = 600) throws -> Result {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { process.terminate(); process.waitUntilExit() }
            let stdout = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
            let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
            return Result(status: process.terminationStatus, stdout: stdout, stderr: stderr)
        }

        /// Sends a signal (e.g. SIGKILL) to the process.
        public func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

        /// Current stderr contents, for tests that wait for a point in the run's life.
        public var stderrSoFar: String { (try? String(contentsOf: errURL, encoding: .utf8)) ?? "" }
    }

    public static func start(_ args: [String], environment: [String: String] = [:], directory: URL? = nil,
                             executable: URL = binary) throws -> Running {
        let process = Process()
        process.executableURL = executable
        process.arguments = args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        if let directory { process.currentDirectoryURL = directory }
        let tmp = FileManager.default.temporaryDirectory
        let outURL = tmp.appendingPathComponent("moerec-cli-\(UUID().uuidString).out")
        let errURL = tmp.appendingPathComponent("moerec-cli-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return Running(process: process, outURL: outURL, errURL: errURL)
    }
}

/// Small generated data sets and configs so CLI tests run in seconds without WordNet.
public enum Fixtures {
    /// Writes corpus.jsonl and task.jsonl (4 classes, 600 records) into `dir`.
    public static func writeData(in dir: URL) throws -> (corpus: URL, task: URL) {
        let words = ["red", "green", "blue", "apple", "river", "stone", "cloud", "music"]
        var corpus = "", task = ""
        for i in 0..<600 {
            let label = i % 4
            let text = (0..<5).map { words[(label * 2 + $0 * ($0 + i)) % words.count] }.joined(separator: " ")
            corpus += "{\"text\": \"\(text) number \(i)\"}\n"
            task += "{\"text\": \"\(text) \(i)\", \"label\": \"class\(label)\"}\n"
        }
        let c = dir.appendingPathComponent("corpus.jsonl"), t = dir.appendingPathComponent("task.jsonl")
        try corpus.write(to: c, atomically: true, encoding: .utf8)
        try task.write(to: t, atomically: true, encoding: .utf8)
        return (c, t)
    }

    /// A tiny pretraining config (JSON) on the generated corpus: a few seconds to train.
    public static func pretrainConfig(corpus: URL, steps: Int = 30, extra: [String: String] = [:]) -> String {
        var fields = ["\"kind\": \"pretrain\"", "\"corpus\": \"\(corpus.path)\"", "\"context\": 32", "\"d_model\": 32",
                      "\"layers\": 2", "\"heads\": 2", "\"d_ff\": 64", "\"experts\": 4", "\"top_k\": 2", "\"moe_every\": 2",
                      "\"steps\": \(steps)", "\"batch_size\": 8", "\"eval_interval\": 10", "\"eval_batches\": 2",
                      "\"checkpoint_interval\": 10", "\"warmup_steps\": 5"]
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) { fields.append("\"\(k)\": \(v)") }
        return "{" + fields.joined(separator: ", ") + "}"
    }

    /// A tiny fine-tuning config: `parent` is a hash, prefix or pretraining config path.
    public static func finetuneConfig(task: URL, parent: String, regime: String = "all", steps: Int = 20,
                                      extra: [String: String] = [:]) -> String {
        var fields = ["\"kind\": \"finetune\"", "\"task\": \"\(task.path)\"", "\"parent\": \"\(parent)\"",
                      "\"regime\": \"\(regime)\"", "\"train_size\": 128", "\"eval_examples\": 32", "\"steps\": \(steps)",
                      "\"batch_size\": 8", "\"eval_interval\": 10", "\"checkpoint_interval\": 10", "\"warmup_steps\": 2"]
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) { fields.append("\"\(k)\": \(v)") }
        return "{" + fields.joined(separator: ", ") + "}"
    }
}
