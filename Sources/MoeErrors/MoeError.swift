/// What a failure means to the person who ran moerec, and so how the process exits. Every
/// library error type states its meaning by conforming to `MoeError`; only the executable
/// turns meanings into exit codes.
public enum ExitMeaning: Equatable, Sendable {
    /// Something the user gave is wrong: an argument, a config, a data file, a path (exit 2).
    case badInput
    /// A check did not pass, or the work could not be done (exit 1).
    case checkFailed
    /// Stopped by a signal (exit 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM).
    case interrupted(signal: Int32)

    /// The process exit status for this meaning.
    public var exitCode: Int32 {
        switch self {
        case .badInput: return 2
        case .checkFailed: return 1
        case let .interrupted(signal): return 128 + signal
        }
    }
}

/// An error of moerec's libraries: its description is the whole message for the user
/// (naming the key, value, file or hash), and `exitMeaning` says whose fault it is.
public protocol MoeError: Error, CustomStringConvertible {
    var exitMeaning: ExitMeaning { get }
}
