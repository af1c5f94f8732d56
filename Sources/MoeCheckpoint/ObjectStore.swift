import Crypto
import Foundation
import MoeJSON
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The result of storing one object.
public struct BlobRef: Codable, Equatable, Hashable, Sendable {
    /// Lowercase hex SHA-256 of the raw (uncompressed) bytes; the object's name.
    public var sha256: String
    /// Uncompressed size in bytes.
    public var rawSize: Int
    /// Size of the zlib file on disk. For an object that already existed this is the size
    /// of the existing file, which may have been written at another compression level.
    public var storedSize: Int
    /// Path below the store root, "ab/cdef…".
    public var relativePath: String
    /// False when the object was already present and nothing was written.
    public var isNew: Bool

    public init(sha256: String, rawSize: Int, storedSize: Int, relativePath: String, isNew: Bool) {
        self.sha256 = sha256
        self.rawSize = rawSize
        self.storedSize = storedSize
        self.relativePath = relativePath
        self.isNew = isNew
    }
}

/// A directory of immutable, content-addressed, zlib-compressed objects.
///
/// An object's name is the SHA-256 of its raw bytes, so storing the same bytes twice costs
/// nothing and a reader can check what it got. The layout follows git's loose objects:
/// `root/ab/cdef…` (first two hex digits as a directory, to keep directories small).
///
/// The store holds no mutable state, so one instance may be used from many threads, and
/// several processes may write into one root: writers of the same object race only on an
/// atomic rename of identical content.
public final class ObjectStore: Sendable {
    /// Default zlib level. fp32 weights are mostly random mantissa bits, so higher levels
    /// buy almost no space and cost several times the CPU; see `CheckpointBenchmark`.
    public static let defaultCompressionLevel = 6

    public let root: URL
    public let compressionLevel: Int
    public let strategy: CompressionStrategy

    /// Prefix of the temporary files a writer creates next to the final name. They start
    /// with a dot so they can never be mistaken for an object.
    static let temporaryPrefix = ".tmp-"

    /// - Parameters:
    ///   - compressionLevel: zlib level 0 (store) to 9 (best). Ignored by `.huffmanOnly`
    ///     except that 0 still means "store".
    ///   - strategy: how deflate searches; does not change what a reader sees.
    public init(root: URL, compressionLevel: Int = ObjectStore.defaultCompressionLevel,
                strategy: CompressionStrategy = .standard) {
        precondition((0...9).contains(compressionLevel), "zlib level must be 0...9, got \(compressionLevel)")
        self.root = root.standardizedFileURL
        self.compressionLevel = compressionLevel
        self.strategy = strategy
    }

    // MARK: Naming

    /// Lowercase hex SHA-256 of `bytes`: the name an object with these bytes gets.
    public static func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
        lowercaseHex(SHA256.hash(data: bytes))
    }

    /// 64 lowercase hex digits. Checked before any name becomes a path.
    public static func isValidObjectName(_ name: String) -> Bool {
        name.utf8.count == 64 && name.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// "ab/cdef…" for a valid object name.
    public func relativePath(for sha256: String) -> String {
        String(sha256.prefix(2)) + "/" + String(sha256.dropFirst(2))
    }

    /// Where the object lives, whether or not it exists yet.
    public func url(for sha256: String) -> URL {
        root.appendingPathComponent(String(sha256.prefix(2)), isDirectory: true)
            .appendingPathComponent(String(sha256.dropFirst(2)), isDirectory: false)
    }

    // MARK: Writing

    /// Stores `bytes` unless an object with the same hash exists.
    ///
    /// A new object is compressed into a uniquely named temporary file in its final
    /// directory, fsynced, renamed over the final name and the directory fsynced. A
    /// process killed at any point leaves either no object or a complete one under the
    /// final name (at worst a stray temporary file, which `findOrphans` reports).
    public func put(_ bytes: UnsafeRawBufferPointer) throws -> BlobRef {
        let sha = ObjectStore.sha256Hex(bytes)
        let path = url(for: sha).path
        let relative = relativePath(for: sha)

        if let existingSize = try regularFileSize(atPath: path) {
            // Trust the existing file: its name is its content's hash, and `verify` is the
            // place to find out if the disk damaged it since.
            return BlobRef(sha256: sha, rawSize: bytes.count, storedSize: existingSize,
                           relativePath: relative, isNew: false)
        }

        let directory = url(for: sha).deletingLastPathComponent().path
        try makeDirectory(root.path, syncParentOnCreate: false)
        try makeDirectory(directory, syncParentOnCreate: true)

        let temporary = directory + "/" + ObjectStore.temporaryPrefix + String(sha.dropFirst(2))
            + "-\(getpid())-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        guard fd >= 0 else { throw CheckpointError.io(operation: "create", path: temporary, errno: errno) }

        var storedSize = 0
        do {
            defer { close(fd) }
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { chunk.deallocate() }
            try Zlib.deflate(bytes, level: Int32(compressionLevel), strategy: strategy, chunk: chunk) { piece in
                try writeAll(fd: fd, piece, path: temporary)
                storedSize += piece.count
            }
            guard fsync(fd) == 0 else { throw CheckpointError.io(operation: "fsync", path: temporary, errno: errno) }
        } catch {
            unlink(temporary)
            throw error
        }

        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw CheckpointError.io(operation: "rename to \(path)", path: temporary, errno: code)
        }
        // The rename is durable only once the directory entry is on disk.
        try syncDirectory(directory)
        return BlobRef(sha256: sha, rawSize: bytes.count, storedSize: storedSize, relativePath: relative, isNew: true)
    }

    public func put(_ bytes: [UInt8]) throws -> BlobRef {
        try bytes.withUnsafeBytes { try put($0) }
    }

    public func put(_ values: [Float]) throws -> BlobRef {
        try values.withUnsafeBytes { try put($0) }
    }

    public func put(_ values: UnsafeBufferPointer<Float>) throws -> BlobRef {
        try put(UnsafeRawBufferPointer(values))
    }

    // MARK: Reading

    /// Reads and verifies an object. Allocates exactly `rawSize` bytes whatever the file
    /// holds.
    public func get(sha256: String, rawSize: Int, context: ObjectContext = .none) throws -> [UInt8] {
        guard rawSize >= 0 else {
            throw CheckpointError.invalidManifest("negative raw size \(rawSize) for object \(sha256)")
        }
        return try [UInt8](unsafeUninitializedCapacity: rawSize) { buffer, initialized in
            // On a throw the array is discarded; its bytes are plain UInt8, so claiming
            // them initialized before the read is harmless and simpler than tracking it.
            initialized = rawSize
            try get(sha256: sha256, rawSize: rawSize, into: UnsafeMutableRawBufferPointer(buffer), context: context)
        }
    }

    /// Inflates an object straight into `destination`, which must be exactly `rawSize`
    /// bytes (e.g. a tensor's view into a flat parameter buffer), then checks the hash.
    /// On any error the destination's contents are unspecified.
    public func get(
        sha256: String, rawSize: Int, into destination: UnsafeMutableRawBufferPointer,
        context: ObjectContext = .none
    ) throws {
        guard destination.count == rawSize else {
            throw CheckpointError.invalidTensor(
                name: context.tensorName ?? sha256,
                reason: "destination holds \(destination.count) bytes, object \(sha256) has \(rawSize)")
        }
        let actual = try inflateAndHash(sha256: sha256, rawSize: rawSize, context: context) { produced in
            UnsafeMutableRawBufferPointer(
                rebasing: destination[produced..<min(rawSize, produced + Zlib.maxChunk)])
        }
        let path = url(for: sha256).path
        guard actual == sha256 else {
            throw CheckpointError.hashMismatch(sha256: sha256, path: path, actual: actual, context: context)
        }
    }

    /// Inflates and hashes the object without keeping it (memory: one 1 MiB chunk).
    /// Returns nil when the object is intact.
    public func verify(sha256: String, rawSize: Int, context: ObjectContext = .none) -> VerifyProblem? {
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        do {
            let actual = try inflateAndHash(sha256: sha256, rawSize: rawSize, context: context) { produced in
                UnsafeMutableRawBufferPointer(rebasing: chunk[..<min(chunk.count, rawSize - produced)])
            }
            guard actual == sha256 else {
                let error = CheckpointError.hashMismatch(
                    sha256: sha256, path: url(for: sha256).path, actual: actual, context: context)
                return VerifyProblem(sha256: sha256, rawSize: rawSize, kind: .hashMismatch, error: error)
            }
            return nil
        } catch let error as CheckpointError {
            return VerifyProblem(sha256: sha256, rawSize: rawSize, kind: VerifyProblem.kind(of: error), error: error)
        } catch {
            let wrapped = CheckpointError.objectCorrupt(
                sha256: sha256, path: url(for: sha256).path, reason: "\(error)", context: context)
            return VerifyProblem(sha256: sha256, rawSize: rawSize, kind: .corrupt, error: wrapped)
        }
    }

    /// Verifies each distinct object once, reporting problems in the order given.
    public func verifyAll(expected: [(sha256: String, rawSize: Int)]) -> [VerifyProblem] {
        var seen = Set<String>()
        var problems: [VerifyProblem] = []
        for object in expected where seen.insert(object.sha256 + ":\(object.rawSize)").inserted {
            if let problem = verify(sha256: object.sha256, rawSize: object.rawSize) {
                problems.append(problem)
            }
        }
        return problems
    }

    /// Lists files under the root that the expected objects do not account for. Never
    /// deletes anything.
    public func findOrphans(expected: some Sequence<String>) throws -> OrphanScan {
        let expectedSet = Set(expected)
        var scan = OrphanScan()
        let fileManager = FileManager.default
        guard fileManager.fileExists(atPath: root.path) else { return scan }
        let isHexPair = { (name: String) in
            name.utf8.count == 2 && name.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
        }
        for directory in try contentsOfDirectory(root.path).sorted() {
            var isDirectory: ObjCBool = false
            _ = fileManager.fileExists(atPath: root.path + "/" + directory, isDirectory: &isDirectory)
            guard isDirectory.boolValue, isHexPair(directory) else {
                scan.unrecognized.append(directory)
                continue
            }
            for file in try contentsOfDirectory(root.path + "/" + directory).sorted() {
                let relative = directory + "/" + file
                if file.hasPrefix(ObjectStore.temporaryPrefix) {
                    scan.temporaryFiles.append(relative)
                } else if ObjectStore.isValidObjectName(directory + file) {
                    if !expectedSet.contains(directory + file) { scan.orphanObjects.append(relative) }
                } else {
                    scan.unrecognized.append(relative)
                }
            }
        }
        return scan
    }

    // MARK: Sizes

    /// Bytes on disk of the distinct objects named, read from the file system (not from
    /// the refs) so that shared objects count once.
    public func totalStoredBytes(of refs: [BlobRef]) throws -> Int {
        try totalStoredBytes(ofObjects: refs.map(\.sha256))
    }

    public func totalStoredBytes(ofObjects sha256s: some Sequence<String>) throws -> Int {
        var total = 0
        for sha in Set(sha256s) {
            guard ObjectStore.isValidObjectName(sha) else { throw CheckpointError.invalidObjectName(sha, context: .none) }
            let path = url(for: sha).path
            guard let size = try regularFileSize(atPath: path) else {
                throw CheckpointError.objectMissing(sha256: sha, path: path, context: .none)
            }
            total += size
        }
        return total
    }

    // MARK: Internals

    /// Opens the object, inflates it through `window` (bounded by `rawSize`) and returns
    /// the hex SHA-256 of what came out. Maps every failure to a `CheckpointError` that
    /// names the object and the caller's context.
    private func inflateAndHash(
        sha256: String, rawSize: Int, context: ObjectContext,
        window: (Int) -> UnsafeMutableRawBufferPointer
    ) throws -> String {
        guard ObjectStore.isValidObjectName(sha256) else {
            throw CheckpointError.invalidObjectName(sha256, context: context)
        }
        guard rawSize >= 0 else {
            throw CheckpointError.invalidManifest("negative raw size \(rawSize) for object \(sha256)")
        }
        let path = url(for: sha256).path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR {
                throw CheckpointError.objectMissing(sha256: sha256, path: path, context: context)
            }
            throw CheckpointError.io(operation: "open", path: path, errno: code)
        }
        defer { close(fd) }

        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)
        defer { input.deallocate() }
        var hasher = SHA256()
        do {
            try Zlib.inflateBounded(
                expectedSize: rawSize, inputBuffer: input,
                read: { buffer in try readSome(fd: fd, into: buffer, path: path) },
                window: window,
                consume: { hasher.update(bufferPointer: $0) })
        } catch let failure as InflateFailure {
            switch failure {
            case .truncated:
                throw CheckpointError.objectCorrupt(
                    sha256: sha256, path: path, reason: "zlib stream is truncated", context: context)
            case .invalidData(let message):
                throw CheckpointError.objectCorrupt(
                    sha256: sha256, path: path, reason: "invalid zlib data (\(message))", context: context)
            case .trailingData:
                throw CheckpointError.objectCorrupt(
                    sha256: sha256, path: path, reason: "bytes follow the end of the zlib stream", context: context)
            case .tooLarge(let limit):
                throw CheckpointError.sizeMismatch(
                    sha256: sha256, path: path, expected: rawSize, found: .moreThan(limit), context: context)
            case .tooSmall(let produced):
                throw CheckpointError.sizeMismatch(
                    sha256: sha256, path: path, expected: rawSize, found: .exactly(produced), context: context)
            }
        }
        return lowercaseHex(hasher.finalize())
    }

    /// Size of a regular file, nil if nothing is there; anything else at the path is an
    /// error rather than a reason to overwrite it.
    private func regularFileSize(atPath path: String) throws -> Int? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return nil }
            throw CheckpointError.io(operation: "stat", path: path, errno: code)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw CheckpointError.io(operation: "expect a regular file", path: path, errno: EEXIST)
        }
        return Int(info.st_size)
    }

    private func makeDirectory(_ path: String, syncParentOnCreate: Bool) throws {
        if mkdir(path, 0o755) == 0 {
            if syncParentOnCreate { try syncDirectory((path as NSString).deletingLastPathComponent) }
            return
        }
        let code = errno
        if code == EEXIST { return }
        if code == ENOENT {
            // The root's parents do not exist yet: create the whole chain once.
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw CheckpointError.io(operation: "mkdir", path: path, errno: ENOENT)
            }
            return
        }
        throw CheckpointError.io(operation: "mkdir", path: path, errno: code)
    }

    private func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw CheckpointError.io(operation: "open directory", path: path, errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw CheckpointError.io(operation: "fsync directory", path: path, errno: errno) }
    }

    private func contentsOfDirectory(_ path: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw CheckpointError.io(operation: "list directory", path: path, errno: EIO)
        }
    }
}

extension VerifyProblem {
    static func kind(of error: CheckpointError) -> Kind {
        switch error {
        case .objectMissing: return .missing
        case .objectCorrupt: return .corrupt
        case .sizeMismatch: return .sizeMismatch
        case .hashMismatch: return .hashMismatch
        case .invalidObjectName, .io, .invalidManifest, .invalidTensor: return .unreadable
        }
    }
}

// MARK: - POSIX helpers

private func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
    var offset = 0
    while offset < bytes.count {
        let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if n < 0 {
            if errno == EINTR { continue }
            throw CheckpointError.io(operation: "write", path: path, errno: errno)
        }
        offset += n
    }
}

private func readSome(fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
    while true {
        let n = read(fd, buffer.baseAddress!, buffer.count)
        if n >= 0 { return n }
        if errno != EINTR { throw CheckpointError.io(operation: "read", path: path, errno: errno) }
    }
}
