import Foundation
import MoeCheckpoint
import MoeStore

/// `moerec merge`: folds stores (shards of a cluster sweep, a laptop's and a cluster's)
/// into one, objects first.
public enum StoreMerger {
    public struct Outcome: Sendable {
        public let source: String
        public let summary: MergeSummary
    }

    /// Merges each of `sources` into `store` in turn (see `Store.merge(from:copyObjects:)`).
    /// Every object a copied checkpoint uses is read from the source's object directory,
    /// inflated and checked against its SHA-256; only when all pass are they written into the
    /// destination's (each under a temporary name, then renamed), before the database
    /// transaction that refers to them. A missing or corrupt object stops that source's merge
    /// with the destination unchanged.
    /// With `lineageOf`, only that run and its ancestors (see `Store.merge`).
    public static func merge(_ sources: [String], into store: Store, lineageOf: String? = nil) throws -> [Outcome] {
        let target = ObjectStore(root: Executor.objectsDirectory(forStore: store.path))
        return try sources.map { source in
            let objects = ObjectStore(root: Executor.objectsDirectory(forStore: source))
            let reader = try Store(path: source, mode: .readOnly)
            defer { reader.close() }
            let summary = try store.merge(from: source, lineageOf: lineageOf) { blobs in
                // All checked before any is written: a bad object leaves the destination untouched.
                var sizes: [String: Int] = [:]
                for sha256 in blobs {
                    guard let record = try reader.blob(sha256: sha256) else {
                        throw CheckFailed("\(source): object \(sha256) has no blob record; nothing was merged from this store")
                    }
                    do {
                        _ = try objects.get(sha256: sha256, rawSize: Int(record.rawSize))
                    } catch {
                        throw CheckFailed("\(source): object \(sha256) cannot be merged: \(error); nothing was merged from this store")
                    }
                    sizes[sha256] = Int(record.rawSize)
                }
                for sha256 in blobs { _ = try target.put(try objects.get(sha256: sha256, rawSize: sizes[sha256]!)) }
            }
            return Outcome(source: source, summary: summary)
        }
    }
}
