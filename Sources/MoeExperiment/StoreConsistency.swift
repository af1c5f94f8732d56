import Foundation
import MoeCheckpoint
import MoeJSON
import MoeStore

/// One way a stored run disagrees with itself: an edited row, a checkpoint that does not
/// describe the run, a manifest entry bound to another tensor's object.
public struct ConsistencyProblem: Equatable, CustomStringConvertible, Sendable {
    public let run: String
    public let step: Int?
    public let tensor: String?
    public let message: String

    public var description: String {
        "run \(run.prefix(12))" + (step.map { " step \($0)" } ?? "") + (tensor.map { " tensor \($0)" } ?? "") + ": " + message
    }
}

/// Checks what the store records about runs against itself, without reading objects
/// (`ObjectStore.verifyAll` does that): each run's hash and config well-formed (the schema
/// leaves them to the code), its hash against the fields it is computed from, and for each
/// checkpoint that its manifest is this run's, at this step, with entries that still hash
/// to the digests written with them. A completed run must have a
/// final checkpoint at its recorded step count.
public enum StoreConsistency {
    public static func check(store: Store, runs: [RunRecord]) throws -> [ConsistencyProblem] {
        var problems: [ConsistencyProblem] = []
        for run in runs {
            func problem(_ step: Int?, _ tensor: String?, _ message: String) {
                problems.append(ConsistencyProblem(run: run.hash, step: step, tensor: tensor, message: message))
            }
            // A row written behind the store's back may have what the schema does not check.
            if let malformed = Store.malformation(hash: run.hash, configJSON: run.configJSON) {
                problem(nil, nil, malformed + ": the row was written outside moerec")
                continue
            }
            let config: [String: JSONValue]
            do {
                let value = try JSONValue(parsing: run.configJSON)
                config = value.objectValue ?? [:]
                let recomputed = try RunIdentity.hash(config: value, parent: run.parentHash,
                                                      datasetFingerprint: run.datasetFingerprint, numerics: run.numericsVersion,
                                                      imported: run.importFingerprint)
                if recomputed != run.hash {
                    problem(nil, nil, "config_json, parent_hash, dataset_fingerprint and numerics_version hash to \(recomputed), not to the run's hash: one of them was edited")
                }
            } catch {
                problem(nil, nil, "config_json cannot be read: \(error)")
                continue
            }
            if case let .string(kind)? = config["kind"], kind != run.kind.rawValue {
                problem(nil, nil, "kind is \(run.kind.rawValue) but its config says \(kind)")
            }
            // An imported run has no checkpoints: its content is its status and metric points,
            // which must still hash to the fingerprint its run hash was made from.
            if run.isImported {
                let points = try store.allMetrics(runHash: run.hash).map {
                    ImportedRun.Point(step: $0.step, split: $0.split, name: $0.name, value: $0.value)
                }
                let content = try ImportedRun.fingerprint(status: run.status, points: points)
                if content != run.importFingerprint {
                    problem(nil, nil, "its status and \(points.count) metric points hash to \(content), not to the imported content's fingerprint \(run.importFingerprint!): they were edited after the import")
                }
                continue
            }
            let checkpoints = try store.checkpoints(runHash: run.hash)
            for checkpoint in checkpoints {
                let manifest: CheckpointManifest
                do { manifest = try CheckpointManifest(json: checkpoint.manifestJSON) } catch {
                    problem(checkpoint.step, nil, "the checkpoint manifest is unreadable: \(error)")
                    continue
                }
                if manifest.runHash != run.hash { problem(checkpoint.step, nil, "the manifest belongs to run \(manifest.runHash)") }
                if manifest.step != checkpoint.step { problem(checkpoint.step, nil, "the manifest is of step \(manifest.step)") }
                if manifest.configJSON != run.configJSON { problem(checkpoint.step, nil, "the manifest's config differs from the run's config_json") }
                for (tensor, message) in manifest.bindingProblems { problem(checkpoint.step, tensor, message) }
                let recorded = Dictionary(try store.blobs(forCheckpoint: checkpoint.id).map { ($0.sha256, Int($0.rawSize)) },
                                          uniquingKeysWith: { a, _ in a })
                for entry in manifest.tensors + manifest.optimizer where recorded[entry.sha256] != entry.rawSize {
                    problem(checkpoint.step, entry.name, recorded[entry.sha256] == nil
                            ? "object \(entry.sha256) has no blob record linked to this checkpoint"
                            : "object \(entry.sha256) is recorded with \(recorded[entry.sha256]!) bytes, the manifest says \(entry.rawSize)")
                }
            }
            // A baseline run is a classifier fitted in seconds: it keeps metrics, no checkpoint.
            guard run.status == .completed, run.kind != .baseline else { continue }
            guard let final = checkpoints.last else {
                problem(nil, nil, "the run is completed but has no checkpoint")
                continue
            }
            if final.step != run.stepsDone {
                problem(final.step, nil, "the final checkpoint is at step \(final.step) but steps_done is \(run.stepsDone)")
            }
            if case let .int(steps)? = config["steps"], steps != Int64(run.stepsDone) {
                problem(nil, nil, "steps_done is \(run.stepsDone) but the config trains \(steps) steps")
            }
        }
        return problems
    }
}
