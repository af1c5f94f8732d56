import Foundation
import MoeCheckpoint
import MoeStore

/// `moerec backup`: a copy of a store, taken while other processes may be writing it.
public enum StoreBackup {
    public struct Summary: Sendable {
        /// The copy's database file.
        public let database: String
        public let runs: Int
        public let objects: Int
    }

    /// Copies `store` into the directory `destination`, which must be absent or empty: the
    /// database by SQLite's online backup (one consistent snapshot), then every object the
    /// snapshot's blob records name, each read back and checked against its SHA-256 on the
    /// way and written under a temporary name, then renamed. Objects written after the
    /// snapshot are not copied; the copy references none of them.
    public static func copy(_ store: Store, into destination: String) throws -> Summary {
        try checkDestination(destination)
        do {
            try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
        } catch {
            throw InputError("backup destination '\(destination)': cannot create the directory (\(error.localizedDescription))")
        }
        let database = (destination as NSString).appendingPathComponent((store.path as NSString).lastPathComponent)
        try store.backup(to: database)
        let copy = try Store(path: database, mode: .readOnly)
        defer { copy.close() }
        let source = ObjectStore(root: Executor.objectsDirectory(forStore: store.path))
        let target = ObjectStore(root: Executor.objectsDirectory(forStore: database))
        let blobs = try copy.allBlobs()
        for blob in blobs {
            // `get` inflates and checks the SHA-256; `put` writes a temporary file and renames it.
            _ = try target.put(try source.get(sha256: blob.sha256, rawSize: Int(blob.rawSize)))
        }
        return Summary(database: database, runs: try copy.allRuns().count, objects: blobs.count)
    }

    /// An existing destination must be an empty directory: a backup never overwrites.
    static func checkDestination(_ destination: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: destination, isDirectory: &isDirectory) else { return }
        guard isDirectory.boolValue else {
            throw InputError("backup destination '\(destination)' exists and is not a directory; give a new or empty directory")
        }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: destination)) ?? ["?"]
        if !entries.isEmpty {
            throw InputError("backup destination '\(destination)' is not empty; give a new or empty directory")
        }
    }
}
