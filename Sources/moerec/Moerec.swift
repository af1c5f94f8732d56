import ArgumentParser
import Foundation
import MoeData
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
                      Report.self, Backup.self, Bench.self])

    /// Parses and runs, mapping errors to the documented exit codes: usage and input
    /// errors 2, failed checks and runtime failures 1.
    static func main() {
        // `exit` runs no deinitialisers: close the stores (checkpointing their logs) here.
        atexit { Store.closeAll() }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            if let exit = error as? ExitCode { Foundation.exit(exit.rawValue) }
            let message = (error is ValidationError || error is CleanExit || "\(type(of: error))".contains("ParserError")
                           || "\(type(of: error))".contains("CommandError")) ? fullMessage(for: error) : "\(error)"
            FileHandle.standardError.write(Data(("error: " + message.replacingOccurrences(of: "Error: ", with: "") + "\n").utf8))
            Foundation.exit(isInputError(error) || code.rawValue == 64 ? 2 : 1)
        }
    }

    static func isInputError(_ error: Error) -> Bool {
        if error is InputError || error is ValidationError || error is DataError { return true }
        if let store = error as? StoreError { return store.isInputError }
        if let json = error as? JSONError {
            // Text that is not JSON, or a number JSON cannot carry, came from the user; a value
            // that cannot be encoded at all is a defect of moerec.
            if case .unencodableValue = json { return false }
            return true
        }
        let name = "\(type(of: error))"
        return name.contains("ParserError") || name.contains("CommandError")
    }
}


struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Experiment store (default: $MOEREC_STORE or runs/moerec.sqlite).")
    var store: String?

    @Option(name: .long, help: "Worker threads for training; results do not depend on it (recorded with every run).")
    var threads: Int = 1

    var storePath: String { store ?? Store.defaultPath() }

    func validate() throws {
        guard threads >= 1 && threads <= 64 else { throw ValidationError("--threads \(threads): must be in 1...64") }
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
        Signals.install(executor.stop)
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

/// SIGINT/SIGTERM stop training after the current step; the run is marked interrupted
/// and resumes from its last checkpoint.
enum Signals {
    nonisolated(unsafe) static var flag: StopFlag?
    static func install(_ stop: StopFlag) {
        flag = stop
        signal(SIGINT) { _ in Signals.flag?.raise() }
        signal(SIGTERM) { _ in Signals.flag?.raise() }
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
                          p.tokensPerSecond, Self.duration(eta))
        if tty {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (p.step == p.steps ? "\n" : "")).utf8))
        } else if Date().timeIntervalSince(lastPlain) >= 10 || p.step == p.steps {
            lastPlain = Date()
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(max(0, s.rounded()))
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}
