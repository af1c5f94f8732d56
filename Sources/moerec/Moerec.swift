import ArgumentParser
import Foundation
import MoeData
import MoeErrors
import MoeExperiment
import MoeJSON
import MoeStore
import MoeTrain

typealias MoeTrainProgress = MoeTrain.Progress

@main
struct Moerec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moerec",
        abstract: "Train small Mixture-of-Experts transformers, keep every run by config hash, and compare fine-tuning regimes.",
        discussion: """
        Runs live in one SQLite store (default runs/moerec.sqlite, or --store / MOEREC_STORE), \
        checkpoints in runs/objects/ beside it. Exit codes: 0 success, 1 a check failed \
        (reproduce mismatch, verify found corruption, a run failed), 2 bad input.

        Example: moerec run --preset quick
        """,
        version: Executor.version,
        subcommands: [RunCommand.self, Sweep.self, Runs.self, Show.self, Diff.self, Reproduce.self, Verify.self,
                      Report.self, Backup.self, Merge.self, Import.self, Export.self, Baseline.self, Bench.self])

    /// ArgumentParser's own messages start with this prefix, as moerec's do.
    static var _errorPrefix: String { "error: " }

    /// Parses and runs, then maps an error to the documented exit codes — the one place
    /// that does. moerec's errors carry their meaning (`MoeError`); ArgumentParser's are
    /// read through its public API (a usage mistake is bad input); anything else is 1.
    static func main() {
        // `exit` runs no deinitialisers: close the stores (checkpointing their logs) here.
        atexit { Store.closeAll() }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let (status, message) = outcome(of: error)
            if status == 0 {
                print(message)
            } else if !message.isEmpty {
                FileHandle.standardError.write(Data((message.hasSuffix("\n") ? message : message + "\n").utf8))
            }
            Foundation.exit(status)
        }
    }

    /// The exit status and the whole message (empty for a bare `ExitCode`) for `error`.
    static func outcome(of error: Error) -> (status: Int32, message: String) {
        if let error = error as? MoeError { return (error.exitMeaning.exitCode, _errorPrefix + error.description) }
        let code = exitCode(for: error)
        return (code == .validationFailure ? ExitMeaning.badInput.exitCode : code.rawValue, fullMessage(for: error))
    }
}


struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Experiment store (default: $MOEREC_STORE or runs/moerec.sqlite).")
    var store: String?

    @Option(name: .long, help: "Worker threads for training; results do not depend on it (recorded with every run).")
    var threads: Int = 1

    var storePath: String { store ?? Store.defaultPath() }

    func validate() throws {
        try requireOption("--threads", threads, in: 1...64)
        if let store, store.isEmpty { throw ValidationError("--store: empty path") }
    }

    /// The store for a command that writes, created when missing.
    func openStore() throws -> Store { try Store(path: storePath) }

    /// The store for a command that only reads: it must exist, and nothing is written.
    func readStore() throws -> Store { try Store(path: storePath, mode: .readOnly) }

    /// The store, read-only, when its file exists; nil stands for an empty store that is
    /// not created.
    func existingStore() throws -> Store? {
        FileManager.default.fileExists(atPath: storePath) ? try readStore() : nil
    }

    /// `processes`: how many processes will run `threads` workers each (a sweep's --jobs).
    func executor(store: Store, processes: Int = 1, data: DataProvider = DataProvider()) throws -> Executor {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if threads * processes > cores {
            let asked = processes > 1 ? "--jobs \(processes) × --threads \(threads)" : "--threads \(threads)"
            FileHandle.standardError.write(Data("note: \(asked) is more than the \(cores) available cores: slower, same results\n".utf8))
        }
        let executor = try Executor(store: store, threads: threads, data: data)
        executor.gitCommit = GitInfo.commit()
        executor.progress = ProgressPrinter.shared.report
        executor.stop = Signals.install(executor.stop)
        return executor
    }
}

enum GitInfo {
    /// The commit the binary was built from, when run inside the repository (best effort).
    static func commit() -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = ["rev-parse", "--short=12", "HEAD"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        let text = String(data: pipe.fileHandleForReading.readDataToEndOfFile(), encoding: .utf8)?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return text?.isEmpty == false ? text : nil
    }
}

/// SIGINT/SIGTERM stop training after the current step (and planning after the current
/// cell); the run is marked interrupted and resumes from its last checkpoint, scratch
/// files are removed, and the process exits 128 + the signal (see `Interrupted`).
enum Signals {
    nonisolated(unsafe) static var flag: StopFlag?

    /// Routes SIGINT and SIGTERM to `stop` (or to the flag already installed) and returns
    /// the flag in use, so work planned before an executor exists stops on the same flag.
    @discardableResult
    static func install(_ stop: StopFlag = StopFlag()) -> StopFlag {
        if let flag { return flag }
        flag = stop
        signal(SIGINT) { Signals.flag?.raise(signal: $0) }
        signal(SIGTERM) { Signals.flag?.raise(signal: $0) }
        return stop
    }
}

/// Progress on stderr: one rewritten line on a terminal, plain lines otherwise.
final class ProgressPrinter: @unchecked Sendable {
    static let shared = ProgressPrinter()
    let tty = isatty(STDERR_FILENO) != 0
    private var lastPlain = Date.distantPast

    func report(_ run: String, _ p: MoeTrainProgress) {
        let eta = p.secondsPerStep * Double(p.steps - p.step)
        let line = String(format: "%@ step %d/%d loss %.4f %.0f tok/s ETA %@", run, p.step, p.steps, p.loss,
                          p.tokensPerSecond, StudyProgress.duration(eta))
        if tty {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (p.step == p.steps ? "\n" : "")).utf8))
        } else if Date().timeIntervalSince(lastPlain) >= 10 || p.step == p.steps {
            lastPlain = Date()
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }
}
