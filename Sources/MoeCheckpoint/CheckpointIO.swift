import Foundation

#if _endian(big)
#error("checkpoint objects hold little-endian fp32 bytes as they sit in memory; big-endian hosts need a byte swap")
#endif

/// A tensor to be checkpointed: a view into the engine's flat buffers, not a copy. The
/// memory must stay valid and unchanged for the duration of `writeCheckpoint`.
public struct NamedTensor {
    public var name: String
    public var shape: [Int]
    public var group: String
    /// (product of shape) floats.
    public var values: UnsafeBufferPointer<Float>

    public init(name: String, shape: [Int], group: String, values: UnsafeBufferPointer<Float>) {
        self.name = name
        self.shape = shape
        self.group = group
        self.values = values
    }
}

/// Stores every tensor as an object and returns the manifest describing the checkpoint,
/// with the objects that were actually written (those not already in the store). A tensor
/// whose bytes are already stored (frozen by the regime, so byte-identical to the
/// parent's) costs nothing.
///
/// All objects are durable when this returns; record the manifest (in SQLite) only
/// afterwards, so that a crash can leave unreferenced objects but never a manifest that
/// points at missing ones.
public func writeCheckpoint(
    objects: ObjectStore,
    runHash: String,
    step: Int,
    tensors: [NamedTensor],
    optimizer: [NamedTensor],
    optimizerStep: Int,
    state: [String: String],
    configJSON: String
) throws -> (CheckpointManifest, newBlobs: [BlobRef]) {
    var seenNames = Set<String>()
    for tensor in tensors + optimizer {
        guard seenNames.insert(tensor.name).inserted else {
            throw CheckpointError.invalidTensor(name: tensor.name, reason: "name appears twice in one checkpoint")
        }
        do {
            try CheckpointManifest.validateName(tensor.name)
        } catch {
            throw CheckpointError.invalidTensor(name: tensor.name, reason: "name is empty or contains NUL")
        }
        guard tensor.shape.allSatisfy({ $0 >= 0 }), tensor.shape.reduce(1, *) == tensor.values.count else {
            throw CheckpointError.invalidTensor(
                name: tensor.name, reason: "shape \(tensor.shape) does not match \(tensor.values.count) values")
        }
    }

    var newBlobs: [BlobRef] = []
    func store(_ list: [NamedTensor]) throws -> [TensorEntry] {
        try list.map { tensor in
            let ref = try objects.put(tensor.values)
            if ref.isNew { newBlobs.append(ref) }
            var entry = TensorEntry(name: tensor.name, shape: tensor.shape, group: tensor.group,
                                    sha256: ref.sha256, rawSize: ref.rawSize, storedSize: ref.storedSize)
            entry.digest = entry.bindingDigest
            return entry
        }
    }
    var manifest = CheckpointManifest(
        runHash: runHash, step: step,
        tensors: try store(tensors), optimizer: try store(optimizer),
        optimizerStep: optimizerStep, state: state, configJSON: configJSON)
    manifest.recordedParameterDigest = manifest.parameterDigest
    return (manifest, newBlobs)
}

/// What `readCheckpoint` did with each tensor.
public struct CheckpointLoad: Equatable, Sendable {
    /// Loaded and verified, in manifest order (parameters, then optimizer).
    public var loaded: [String] = []
    /// The caller gave no destination; not read at all.
    public var skipped: [String] = []
}

/// Loads a checkpoint into the caller's buffers. For each entry (parameters first, then
/// optimizer state) `into` returns the destination, exactly `elementCount` floats, or nil
/// to skip the entry (a fine-tuning run starting from its parent wants the parameters
/// but not the parent's optimizer moments). Every loaded tensor is inflated straight into
/// its destination and its SHA-256 checked; an error names the run, the tensor and the
/// object. Skipped entries are not read, so `ObjectStore.verify` is the tool for checking
/// a whole checkpoint without loading it.
@discardableResult
public func readCheckpoint(
    objects: ObjectStore,
    manifest: CheckpointManifest,
    into destination: (TensorEntry) throws -> UnsafeMutableBufferPointer<Float>?
) throws -> CheckpointLoad {
    try manifest.validate()
    // Never load a tensor from an object the manifest no longer binds to it.
    if let (tensor, problem) = manifest.bindingProblems.first {
        throw CheckpointError.invalidManifest("checkpoint of run \(manifest.runHash) step \(manifest.step)"
                                              + (tensor.map { ", tensor \($0)" } ?? "") + ": " + problem)
    }
    var load = CheckpointLoad()
    for entry in manifest.tensors + manifest.optimizer {
        guard let buffer = try destination(entry) else {
            load.skipped.append(entry.name)
            continue
        }
        guard buffer.count == entry.elementCount else {
            throw CheckpointError.invalidTensor(
                name: entry.name,
                reason: "destination holds \(buffer.count) floats, the checkpoint of run \(manifest.runHash) has \(entry.elementCount) (shape \(entry.shape))")
        }
        try objects.get(sha256: entry.sha256, rawSize: entry.rawSize, into: UnsafeMutableRawBufferPointer(buffer),
                        context: ObjectContext(runHash: manifest.runHash, tensorName: entry.name))
        load.loaded.append(entry.name)
    }
    return load
}

/// Verifies every object of a checkpoint (parameters and optimizer state) without
/// loading it; each problem names the run and the tensor.
public func verifyCheckpoint(objects: ObjectStore, manifest: CheckpointManifest) -> [VerifyProblem] {
    var problems: [VerifyProblem] = []
    for entry in manifest.tensors + manifest.optimizer {
        let context = ObjectContext(runHash: manifest.runHash, tensorName: entry.name)
        if let problem = objects.verify(sha256: entry.sha256, rawSize: entry.rawSize, context: context) {
            problems.append(problem)
        }
    }
    return problems
}
