import Foundation
import XCTest

/// The NumPy reference of the model's forward pass, `Tests/Reference/moe_reference.py`,
/// written from README "The model, operation by operation", and the Python that runs it.
public enum NumPyReference {
    public static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Reference/moe_reference.py")

    /// The largest relative difference the reference accepts between its fp64 results and
    /// moerec's fp32 ones.
    public static let tolerance = 1e-4

    /// The first of `python3` on PATH and Debian's `/usr/bin/python3` that imports NumPy
    /// (`MOEREC_PYTHON` names another interpreter, tried alone). Without one the check fails
    /// when CI is set (CI must run it) and is skipped elsewhere, with the package to install.
    public static func python() throws -> URL {
        if let found = found { return found }
        let message = "the NumPy reference needs python3 with NumPy: apt-get install python3-numpy (or scripts/install-deps.sh)"
        if let ci = ProcessInfo.processInfo.environment["CI"], !ci.isEmpty, ci != "0", ci.lowercased() != "false" {
            throw Failure(description: message + "; CI=\(ci) requires this check")
        }
        throw XCTSkip(message)
    }

    private static let found: URL? = {
        let environment = ProcessInfo.processInfo.environment
        let candidates = environment["MOEREC_PYTHON"].map { [URL(fileURLWithPath: $0)] }
            ?? (environment["PATH"] ?? "").split(separator: ":").map { URL(fileURLWithPath: String($0)).appendingPathComponent("python3") }
            + [URL(fileURLWithPath: "/usr/bin/python3")]
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate.path) {
            if let result = try? CLI.run(["-c", "import numpy"], timeout: 60, executable: candidate), result.status == 0 {
                return candidate
            }
        }
        return nil
    }()

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// `moe_reference.py args…` under `python()`.
    public static func run(_ args: [String]) throws -> CLI.Result {
        try CLI.run([script.path] + args, timeout: 300, executable: try python())
    }

    /// The "max relative difference: X" a `compare` printed, nil when it printed none.
    public static func maxRelativeDifference(_ stdout: String) -> Double? {
        let prefix = "max relative difference: "
        guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
        return Double(line.dropFirst(prefix.count).prefix { !$0.isWhitespace })
    }

    /// Tensor name → SHA-256 of its bytes, as `moe_reference.py digests FILE` read them.
    public static func digests(of file: URL) throws -> [String: String] {
        let result = try run(["digests", file.path])
        guard result.status == 0 else { throw Failure(description: "digests \(file.path) exited \(result.status): \(result.stderr)") }
        var out: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { out[parts[1].trimmingCharacters(in: .whitespaces)] = String(parts[0]) }
        }
        return out
    }
}
