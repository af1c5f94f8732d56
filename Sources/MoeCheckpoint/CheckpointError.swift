import Foundation
import MoeErrors
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Who asked for an object. The object store knows only hashes; the checkpoint reader
/// knows which run and which tensor an object belongs to, and passes that along so an
/// error message can point a person at the damaged tensor without a second lookup.
public struct ObjectContext: Equatable, Hashable, Sendable {
    public var runHash: String?
    public var tensorName: String?

    public init(runHash: String? = nil, tensorName: String? = nil) {
        self.runHash = runHash
        self.tensorName = tensorName
    }

    public static let none = ObjectContext()

    /// ", run 3fa2…, tensor layers.1.attn.wq" or "" when nothing is known.
    var suffix: String {
        var parts: [String] = []
        if let runHash { parts.append("run \(runHash)") }
        if let tensorName { parts.append("tensor \(tensorName)") }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"
    }
}

/// How many bytes an object inflated to, when that is not the recorded raw size.
public enum ObservedSize: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The stream ended after exactly this many bytes.
    case exactly(Int)
    /// The stream had more output than the recorded size; inflation stopped there, so only
    /// a lower bound is known (that bound is what makes a zip bomb harmless).
    case moreThan(Int)

    public var description: String {
        switch self {
        case .exactly(let n): return "\(n) bytes"
        case .moreThan(let n): return "more than \(n) bytes"
        }
    }
}

/// Everything that can go wrong when storing or loading checkpoint objects. The four
/// integrity cases (missing, corrupt, size mismatch, hash mismatch) are kept apart because
/// they call for different responses: a missing object points at an incomplete copy or
/// merge of the store, the others at damaged bytes.
public enum CheckpointError: MoeError, Equatable, Sendable, LocalizedError {
    /// No file exists for the object.
    case objectMissing(sha256: String, path: String, context: ObjectContext)
    /// The file is not a complete, valid zlib stream (truncated, bad data, bad checksum,
    /// trailing bytes).
    case objectCorrupt(sha256: String, path: String, reason: String, context: ObjectContext)
    /// The stream is valid but inflates to a different size than the one recorded.
    case sizeMismatch(sha256: String, path: String, expected: Int, found: ObservedSize, context: ObjectContext)
    /// The stream inflates to the recorded size, but the bytes hash to something else.
    case hashMismatch(sha256: String, path: String, actual: String, context: ObjectContext)
    /// A name that is not 64 lowercase hex digits; refused before it reaches the file
    /// system, so a damaged manifest cannot point outside the object directory.
    case invalidObjectName(String, context: ObjectContext)
    /// A system call failed; `errno` is kept for callers that want to tell ENOSPC apart.
    case io(operation: String, path: String, errno: Int32)
    /// The manifest cannot be decoded, or is inconsistent with itself.
    case invalidManifest(String)
    /// A tensor handed to the writer or reader does not fit its description.
    case invalidTensor(name: String, reason: String)

    public var description: String {
        switch self {
        case let .objectMissing(sha, path, context):
            return "checkpoint object \(sha) is missing: no file at \(path)\(context.suffix)"
        case let .objectCorrupt(sha, path, reason, context):
            return "checkpoint object \(sha) is corrupt: \(reason) in \(path)\(context.suffix)"
        case let .sizeMismatch(sha, path, expected, found, context):
            return "checkpoint object \(sha) has the wrong size: recorded \(expected) bytes, "
                + "the stream inflates to \(found) in \(path)\(context.suffix)"
        case let .hashMismatch(sha, path, actual, context):
            return "checkpoint object \(sha) fails its SHA-256 check: the content hashes to "
                + "\(actual) in \(path)\(context.suffix)"
        case let .invalidObjectName(name, context):
            return "invalid checkpoint object name \"\(name)\": expected 64 lowercase hex digits\(context.suffix)"
        case let .io(operation, path, code):
            return "\(operation) failed for \(path): \(String(cString: strerror(code))) (errno \(code))"
        case let .invalidManifest(reason):
            return "invalid checkpoint manifest: \(reason)"
        case let .invalidTensor(name, reason):
            return "tensor \(name): \(reason)"
        }
    }

    public var errorDescription: String? { description }

    /// Damaged or missing objects are what `verify` and `reproduce` exist to find: a check
    /// that failed, never the user's input.
    public var exitMeaning: ExitMeaning { .checkFailed }
}

/// One integrity problem found by `ObjectStore.verify`. The kind mirrors the integrity
/// cases of `CheckpointError`; `error` carries the full message for printing.
public struct VerifyProblem: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Hashable, Sendable {
        case missing
        case corrupt
        case sizeMismatch
        case hashMismatch
        /// The file exists but could not be read (permissions, I/O error) or the name is
        /// not a valid object name.
        case unreadable
    }

    public let sha256: String
    public let rawSize: Int
    public let kind: Kind
    public let error: CheckpointError

    public var description: String { error.description }
}

/// Files under the object root that no expected object accounts for. Reported, never
/// deleted: whether a file is garbage depends on every run in the store, which only the
/// caller (the SQLite side) knows.
public struct OrphanScan: Equatable, Sendable {
    /// Well-formed objects ("ab/cdef…") whose hash is not in the expected set.
    public var orphanObjects: [String] = []
    /// Temporary files left by a writer that was killed between create and rename.
    public var temporaryFiles: [String] = []
    /// Anything else (stray files, oddly named directories).
    public var unrecognized: [String] = []

    public var isEmpty: Bool { orphanObjects.isEmpty && temporaryFiles.isEmpty && unrecognized.isEmpty }
}
