import Crypto
import Foundation
import MoeJSON

/// One tensor of a checkpoint: what it is, and which object holds its bytes.
public struct TensorEntry: Codable, Equatable, Hashable, Sendable {
    public var name: String
    public var shape: [Int]
    /// Always "f32": IEEE-754 binary32, little-endian, row-major, as the engine holds it
    /// in memory.
    public var dtype: String
    /// Parameter group (embed, attn, norm, ffn, router, experts, head); what regimes
    /// select on.
    public var group: String
    public var sha256: String
    public var rawSize: Int
    public var storedSize: Int
    /// `bindingDigest` as the entry was written (nil in checkpoints written before it
    /// existed). The object hash alone says the bytes are intact, not that they are this
    /// tensor's: two same-size tensors with their objects swapped pass every object check.
    public var digest: String?

    public init(name: String, shape: [Int], dtype: String = "f32", group: String,
                sha256: String, rawSize: Int, storedSize: Int, digest: String? = nil) {
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.group = group
        self.sha256 = sha256
        self.rawSize = rawSize
        self.storedSize = storedSize
        self.digest = digest
    }

    /// Number of elements the shape describes.
    public var elementCount: Int { shape.reduce(1, *) }

    /// SHA-256 (lowercase hex) binding the object to the tensor it holds, over
    /// `name NUL dtype NUL shape (comma-separated) NUL raw_size NUL sha256`.
    public var bindingDigest: String {
        var hasher = SHA256()
        let text = [name, dtype, shape.map(String.init).joined(separator: ","), String(rawSize), sha256].joined(separator: "\0")
        hasher.update(data: Array(text.utf8))
        return lowercaseHex(hasher.finalize())
    }

    /// False when the entry carries a digest its fields no longer hash to (an edited or
    /// swapped entry); entries without one cannot tell.
    public var matchesDigest: Bool { digest.map { $0 == bindingDigest } ?? true }

    enum CodingKeys: String, CodingKey {
        case name, shape, dtype, group, sha256, digest
        case rawSize = "raw_size"
        case storedSize = "stored_size"
    }
}

/// Everything needed to restore a run at a step, exactly: parameters, optimizer moments,
/// the optimizer's step count, the data-loader position and RNG counters, and the
/// resolved config. The manifest itself is small JSON kept in the SQLite store; the
/// tensors live in the object store.
public struct CheckpointManifest: Codable, Equatable, Sendable {
    /// Bumped when the manifest's meaning changes; readers refuse versions they do not
    /// know rather than misread them.
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var runHash: String
    public var step: Int
    /// Parameters, in the engine's canonical order (the order the digest uses).
    public var tensors: [TensorEntry]
    /// Adam first and second moments of the trainable tensors only, named "<tensor>.m"
    /// and "<tensor>.v". Frozen tensors have none.
    public var optimizer: [TensorEntry]
    public var optimizerStep: Int
    /// Whatever else an exact resume needs: data-loader position, RNG counters.
    public var state: [String: String]
    /// The resolved config, as the run hash saw it.
    public var configJSON: String
    /// `parameterDigest` when the checkpoint was written (nil before it was recorded), so
    /// that a reader can tell whether the entries still describe what was saved.
    public var recordedParameterDigest: String?

    public init(formatVersion: Int = CheckpointManifest.currentFormatVersion, runHash: String, step: Int,
                tensors: [TensorEntry], optimizer: [TensorEntry], optimizerStep: Int,
                state: [String: String], configJSON: String) {
        self.formatVersion = formatVersion
        self.runHash = runHash
        self.step = step
        self.tensors = tensors
        self.optimizer = optimizer
        self.optimizerStep = optimizerStep
        self.state = state
        self.configJSON = configJSON
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case runHash = "run_hash"
        case step, tensors, optimizer
        case optimizerStep = "optimizer_step"
        case state
        case configJSON = "config_json"
        case recordedParameterDigest = "parameter_digest"
    }

    // MARK: JSON

    /// The canonical JSON form (MoeJSON): equal manifests give equal bytes, so the text can
    /// be hashed or compared directly. For a manifest's ASCII keys, integers and strings it
    /// is byte for byte what earlier versions wrote with sorted keys and unescaped slashes.
    public func jsonString() -> String {
        do {
            return try JSONValue(encodable: self).canonicalString
        } catch {
            // Strings, integers, arrays and string dictionaries always encode.
            preconditionFailure("encoding a checkpoint manifest cannot fail: \(error)")
        }
    }

    /// Decodes and validates a manifest.
    public init(json: String) throws {
        do {
            self = try JSONValue(parsing: json).decode(CheckpointManifest.self)
        } catch {
            throw CheckpointError.invalidManifest("cannot decode JSON: \(error)")
        }
        try validate()
    }

    /// Checks what a reader relies on: a known format version, unique tensor names,
    /// object names that cannot escape the object directory, and sizes that agree with
    /// shapes (so a reader can size its buffers from the manifest alone).
    public func validate() throws {
        guard formatVersion >= 1, formatVersion <= CheckpointManifest.currentFormatVersion else {
            throw CheckpointError.invalidManifest(
                "format version \(formatVersion) is not supported (this build reads up to \(CheckpointManifest.currentFormatVersion))")
        }
        var names = Set<String>()
        for entry in tensors + optimizer {
            guard names.insert(entry.name).inserted else {
                throw CheckpointError.invalidManifest("tensor name \(entry.name) appears twice")
            }
            try CheckpointManifest.validateName(entry.name)
            guard entry.dtype == "f32" else {
                throw CheckpointError.invalidManifest("tensor \(entry.name) has dtype \(entry.dtype); only f32 is supported")
            }
            guard entry.shape.allSatisfy({ $0 >= 0 }),
                  entry.rawSize == entry.elementCount * MemoryLayout<Float>.size else {
                throw CheckpointError.invalidManifest(
                    "tensor \(entry.name): shape \(entry.shape) does not match raw size \(entry.rawSize)")
            }
            guard ObjectStore.isValidObjectName(entry.sha256) else {
                throw CheckpointError.invalidManifest("tensor \(entry.name): invalid object name \(entry.sha256)")
            }
        }
    }

    /// Names are joined with NUL in the digest, so NUL may not occur in one.
    static func validateName(_ name: String) throws {
        guard !name.isEmpty, !name.utf8.contains(0) else {
            throw CheckpointError.invalidManifest("tensor name \"\(name)\" is empty or contains NUL")
        }
    }

    // MARK: Identity

    /// SHA-256 (lowercase hex) over the ordered list of parameter tensors' (name, object
    /// hash), encoded as `name NUL sha256 LF` per tensor. Optimizer state, step and run
    /// hash are left out on purpose: two checkpoints whose parameters are the same bytes
    /// under the same names have the same digest, whichever run produced them.
    public var parameterDigest: String {
        var hasher = SHA256()
        for entry in tensors {
            hasher.update(data: Array(entry.name.utf8))
            hasher.update(data: [0])
            hasher.update(data: Array(entry.sha256.utf8))
            hasher.update(data: [0x0a])
        }
        return lowercaseHex(hasher.finalize())
    }

    /// What no longer agrees with what was written: each entry whose fields do not hash to
    /// its digest (by tensor name), and the parameter digest. Empty for an intact manifest
    /// and for one written before digests were recorded.
    public var bindingProblems: [(tensor: String?, problem: String)] {
        var problems: [(String?, String)] = (tensors + optimizer).filter { !$0.matchesDigest }.map {
            ($0.name, "the entry (shape \($0.shape), \($0.rawSize) bytes, object \($0.sha256)) does not hash to the digest written with it: the entry was edited or its object swapped with another tensor's")
        }
        if let recorded = recordedParameterDigest, recorded != parameterDigest {
            problems.append((nil, "the parameter entries hash to \(parameterDigest), not to the parameter digest \(recorded) written with the checkpoint"))
        }
        return problems
    }

    /// Every object the checkpoint refers to (parameters and optimizer state), for
    /// `ObjectStore.verifyAll` and `findOrphans`.
    public var objectReferences: [(sha256: String, rawSize: Int)] {
        (tensors + optimizer).map { ($0.sha256, $0.rawSize) }
    }
}
