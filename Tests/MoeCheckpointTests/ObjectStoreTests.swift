import Dispatch
import Foundation
import MoeCheckpoint
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class ObjectStoreTests: XCTestCase {
    // MARK: Naming and round trips

    func testObjectIsNamedBySHA256OfRawBytes() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let ref = try store.put(Array("abc".utf8))
        // FIPS 180-2 test vector for SHA-256("abc").
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        XCTAssertEqual(ref.sha256, expected)
        XCTAssertEqual(ref.relativePath, "ba/7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(ref.rawSize, 3)
        XCTAssertTrue(ref.isNew)
        XCTAssertEqual(dir.files(under: dir.objects), [ref.relativePath])
        let onDisk = try FileManager.default.attributesOfItem(atPath: store.url(for: expected).path)
        XCTAssertEqual((onDisk[.size] as? NSNumber)?.intValue, ref.storedSize)
        // A zlib stream starts with CMF 0x78 (deflate, 32K window).
        XCTAssertEqual(try Data(contentsOf: store.url(for: expected)).first, 0x78)
        XCTAssertEqual(try store.get(sha256: expected, rawSize: 3), Array("abc".utf8))
    }

    func testSpecialFloatsRoundTripBitExact() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let special: [Float] = [
            0.0, -0.0, 1.0, -1.0, .infinity, -.infinity,
            Float(bitPattern: 0x7FC0_0000),      // quiet NaN
            Float(bitPattern: 0x7FC1_2345),      // quiet NaN with payload
            Float(bitPattern: 0xFFC0_0001),      // negative quiet NaN with payload
            Float(bitPattern: 0x7F80_0001),      // signalling NaN
            .leastNonzeroMagnitude,              // smallest denormal
            -.leastNonzeroMagnitude,
            Float(bitPattern: 0x0040_0000),      // mid-range denormal
            Float(bitPattern: 0x007F_FFFF),      // largest denormal
            .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .ulpOfOne,
        ]
        var random = TestRandom(state: 7)
        let values = special + random.weights(10_000) + special
        let ref = try store.put(values)
        XCTAssertEqual(ref.rawSize, values.count * 4)

        // Through the [UInt8] API.
        let bytes = try store.get(sha256: ref.sha256, rawSize: ref.rawSize)
        let decoded = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(bitPatterns(decoded), bitPatterns(values))

        // Straight into a caller's buffer, as a parameter view would be loaded.
        var destination = [Float](repeating: 42, count: values.count)
        try destination.withUnsafeMutableBytes {
            try store.get(sha256: ref.sha256, rawSize: ref.rawSize, into: $0)
        }
        XCTAssertEqual(bitPatterns(destination), bitPatterns(values))
    }

    func testEmptyObjectRoundTrips() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let ref = try store.put([UInt8]())
        XCTAssertEqual(ref.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(try store.get(sha256: ref.sha256, rawSize: 0), [])
        XCTAssertNil(store.verify(sha256: ref.sha256, rawSize: 0))
    }

    func testLargeIncompressibleObjectRoundTrips() throws {
        // Several deflate output chunks and inflate input reads.
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects, compressionLevel: 1)
        var random = TestRandom(state: 11)
        let values = random.bits(1_500_000)
        let ref = try store.put(values)
        XCTAssertGreaterThan(ref.storedSize, ref.rawSize) // random bits do not compress
        var destination = [Float](repeating: 0, count: values.count)
        try destination.withUnsafeMutableBytes { try store.get(sha256: ref.sha256, rawSize: ref.rawSize, into: $0) }
        XCTAssertEqual(bitPatterns(destination), bitPatterns(values))
    }

    // MARK: Deduplication

    func testSameBytesTwiceStoreOneFile() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        var random = TestRandom(state: 1)
        let values = random.weights(4096)
        let first = try store.put(values)
        let modified = try FileManager.default.attributesOfItem(atPath: store.url(for: first.sha256).path)[.modificationDate]

        let second = try store.put(values)
        XCTAssertTrue(first.isNew)
        XCTAssertFalse(second.isNew)
        XCTAssertEqual(second.sha256, first.sha256)
        XCTAssertEqual(second.storedSize, first.storedSize)
        XCTAssertEqual(dir.files(under: dir.objects).count, 1)
        let after = try FileManager.default.attributesOfItem(atPath: store.url(for: first.sha256).path)[.modificationDate]
        XCTAssertEqual(after as? Date, modified as? Date, "a second put must not rewrite the object")

        var other = values
        other[100] = -other[100]
        XCTAssertTrue(try store.put(other).isNew)
        XCTAssertEqual(dir.files(under: dir.objects).count, 2)
        XCTAssertEqual(try store.totalStoredBytes(of: [first, second]), first.storedSize)
    }

    func testConcurrentPutsOfTheSameBytesLeaveOneCompleteObject() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        var random = TestRandom(state: 5)
        let values = random.weights(200_000)
        let lock = NSLock()
        var refs: [BlobRef] = []
        var failures: [String] = []
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            do {
                let ref = try store.put(values)
                lock.lock(); refs.append(ref); lock.unlock()
            } catch {
                lock.lock(); failures.append("\(error)"); lock.unlock()
            }
        }
        XCTAssertEqual(failures, [])
        XCTAssertEqual(Set(refs.map(\.sha256)).count, 1)
        XCTAssertGreaterThanOrEqual(refs.filter(\.isNew).count, 1)
        XCTAssertEqual(dir.files(under: dir.objects), [refs[0].relativePath], "no temporary files may remain")
        XCTAssertNil(store.verify(sha256: refs[0].sha256, rawSize: refs[0].rawSize))
    }

    // MARK: Atomic writes

    func testFailedWriteLeavesNoFileUnderTheFinalName() throws {
        // A file-size limit makes write(2) fail part-way through the object, as a full disk
        // would. (Read-only directories do not stop root, which runs CI.)
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        var random = TestRandom(state: 3)
        let values = random.bits(256 * 1024) // 1 MiB that deflate cannot shrink

        var saved = rlimit()
        XCTAssertEqual(getrlimit(resourceFSIZE, &saved), 0)
        var limited = saved
        limited.rlim_cur = 64 * 1024
        let previousHandler = signal(SIGXFSZ, SIG_IGN) // get EFBIG instead of being killed
        XCTAssertEqual(setrlimit(resourceFSIZE, &limited), 0)
        var thrown: Error?
        do { _ = try store.put(values) } catch { thrown = error }
        XCTAssertEqual(setrlimit(resourceFSIZE, &saved), 0)
        signal(SIGXFSZ, previousHandler)

        guard case let .io(operation, path, code)? = thrown as? CheckpointError else {
            return XCTFail("expected an I/O error from the limited write, got \(String(describing: thrown))")
        }
        XCTAssertEqual(operation, "write")
        XCTAssertEqual(code, EFBIG)
        XCTAssertTrue(path.contains("/.tmp-"), "the failed write went to a temporary file: \(path)")
        XCTAssertEqual(dir.files(under: dir.objects), [], "neither a partial object nor a temporary file may remain")

        // With room again the same bytes store normally.
        let ref = try store.put(values)
        XCTAssertTrue(ref.isNew)
        XCTAssertEqual(dir.files(under: dir.objects), [ref.relativePath])
        XCTAssertNil(store.verify(sha256: ref.sha256, rawSize: ref.rawSize))
    }

    func testLeftoverTemporaryFileFromAKilledWriterIsIgnoredAndReported() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        var random = TestRandom(state: 4)
        let values = random.weights(1000)
        let sha = values.withUnsafeBytes { ObjectStore.sha256Hex($0) }

        // What a writer killed before its rename leaves: half a stream beside the final name.
        let shard = store.url(for: sha).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: shard, withIntermediateDirectories: true)
        let leftover = ".tmp-\(sha.dropFirst(2))-12345-abcdef"
        try Data([0x78, 0x9C, 0x01, 0x02]).write(to: shard.appendingPathComponent(leftover))

        guard case .objectMissing? = assertCheckpointError(try store.get(sha256: sha, rawSize: 4000)) else {
            return XCTFail("a temporary file must not count as the object")
        }
        let ref = try store.put(values)
        XCTAssertTrue(ref.isNew)
        XCTAssertEqual(try store.get(sha256: sha, rawSize: 4000).count, 4000)

        let scan = try store.findOrphans(expected: [sha])
        XCTAssertEqual(scan.temporaryFiles, [String(sha.prefix(2)) + "/" + leftover])
        XCTAssertEqual(scan.orphanObjects, [])
        XCTAssertTrue(FileManager.default.fileExists(atPath: shard.appendingPathComponent(leftover).path),
                      "the scan reports, it never deletes")
    }

    // MARK: Integrity

    func testEachKindOfDamageIsReportedDistinctly() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        var random = TestRandom(state: 9)
        let a = try store.put(random.weights(5000))
        let b = try store.put(random.weights(5000))
        let c = try store.put(random.weights(5000))
        let d = try store.put(random.weights(5000))
        let intact = try store.put(random.weights(5000))

        try FileManager.default.removeItem(at: store.url(for: a.sha256))
        try modifyFile(store.url(for: b.sha256)) { $0.removeLast($0.count / 2) }
        // Another object's (valid) stream under c's name: right size, wrong content.
        try plantObject([UInt8](try Data(contentsOf: store.url(for: d.sha256))), as: c.sha256, in: store)

        XCTAssertEqual(store.verify(sha256: a.sha256, rawSize: a.rawSize)?.kind, .missing)
        XCTAssertEqual(store.verify(sha256: b.sha256, rawSize: b.rawSize)?.kind, .corrupt)
        XCTAssertEqual(store.verify(sha256: c.sha256, rawSize: c.rawSize)?.kind, .hashMismatch)
        XCTAssertEqual(store.verify(sha256: d.sha256, rawSize: d.rawSize - 4)?.kind, .sizeMismatch)
        XCTAssertEqual(store.verify(sha256: d.sha256, rawSize: d.rawSize + 4)?.kind, .sizeMismatch)
        XCTAssertNil(store.verify(sha256: d.sha256, rawSize: d.rawSize))
        XCTAssertNil(store.verify(sha256: intact.sha256, rawSize: intact.rawSize))

        guard case let .hashMismatch(_, _, actual, _)? = assertCheckpointError(
            try store.get(sha256: c.sha256, rawSize: c.rawSize)) else { return XCTFail("expected hash mismatch") }
        XCTAssertEqual(actual, d.sha256)

        guard case let .sizeMismatch(_, _, expected, found, _)? = assertCheckpointError(
            try store.get(sha256: d.sha256, rawSize: d.rawSize + 4)) else { return XCTFail("expected size mismatch") }
        XCTAssertEqual(expected, d.rawSize + 4)
        XCTAssertEqual(found, .exactly(d.rawSize))

        let all = [a, b, c, d, intact].map { (sha256: $0.sha256, rawSize: $0.rawSize) }
        let problems = store.verifyAll(expected: all + all)
        XCTAssertEqual(problems.map(\.sha256), [a.sha256, b.sha256, c.sha256], "each object checked once, in order")
        XCTAssertEqual(problems.map(\.kind), [.missing, .corrupt, .hashMismatch])
    }

    func testBitFlipInTheChecksumIsDetected() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        var random = TestRandom(state: 10)
        let ref = try store.put(random.weights(5000))
        try modifyFile(store.url(for: ref.sha256)) { $0[$0.count - 1] ^= 0x01 }
        guard case let .objectCorrupt(_, _, reason, _)? = assertCheckpointError(
            try store.get(sha256: ref.sha256, rawSize: ref.rawSize)) else { return XCTFail("expected corrupt object") }
        XCTAssertTrue(reason.contains("incorrect data check"), reason)
    }

    func testTrailingBytesAfterTheStreamAreCorruption() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let ref = try store.put(Array("hello".utf8))
        try modifyFile(store.url(for: ref.sha256)) { $0.append(0) }
        XCTAssertEqual(store.verify(sha256: ref.sha256, rawSize: ref.rawSize)?.kind, .corrupt)
    }

    func testInvalidObjectNamesNeverReachTheFileSystem() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        for name in ["../../../../etc/passwd", "ABC", String(repeating: "A", count: 64), String(repeating: "0", count: 63)] {
            guard case .invalidObjectName? = assertCheckpointError(try store.get(sha256: name, rawSize: 1)) else {
                return XCTFail("\(name) must be refused")
            }
        }
    }

    // MARK: Decompression bound

    func testCraftedStreamIsValidWhenTheSizeIsRight() throws {
        // Guards the bomb test below: the crafted stream must be a good stream, so that
        // the bomb fails for its size and not for some defect of the craft.
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let (stream, size) = craftedZeroStream(repeats: 40)
        let sha = [UInt8](repeating: 0, count: size).withUnsafeBytes { ObjectStore.sha256Hex($0) }
        try plantObject(stream, as: sha, in: store)
        XCTAssertEqual(try store.get(sha256: sha, rawSize: size), [UInt8](repeating: 0, count: size))
    }

    func testStreamInflatingPastTheRecordedSizeIsRefusedWithoutAllocatingIt() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let (bomb, bombSize) = craftedZeroStream(repeats: 1_000_000)
        XCTAssertLessThan(bomb.count, 2_000_000)
        XCTAssertGreaterThan(bombSize, 250_000_000)

        // Planted under the name of 4 KiB of zeros, with 4 KiB recorded.
        let recorded = 4096
        let sha = [UInt8](repeating: 0, count: recorded).withUnsafeBytes { ObjectStore.sha256Hex($0) }
        try plantObject(bomb, as: sha, in: store)

        resetPeakResident()
        let peakBefore = peakResidentBytes()
        let started = Date()
        guard case let .sizeMismatch(object, _, expected, found, _)? = assertCheckpointError(
            try store.get(sha256: sha, rawSize: recorded)) else { return XCTFail("expected a size mismatch") }
        XCTAssertEqual(object, sha)
        XCTAssertEqual(expected, recorded)
        XCTAssertEqual(found, .moreThan(recorded))
        XCTAssertEqual(store.verify(sha256: sha, rawSize: recorded)?.kind, .sizeMismatch)
        // Inflating past the bound, even one 256 KiB read's worth (about 40 MB of zeros),
        // would raise the peak by that much; stopping at the bound costs a few hundred
        // kilobytes (16 MB leaves room for allocator noise).
        XCTAssertLessThan(peakResidentBytes() - peakBefore, 16 << 20)
        // And it stops early rather than inflating everything into a scratch buffer.
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
    }

    // MARK: Orphans and sizes

    func testOrphanScanReportsUnexpectedFilesAndDeletesNothing() throws {
        let dir = try TemporaryDirectory()
        let store = ObjectStore(root: dir.objects)
        let kept = try store.put(Array("kept".utf8))
        let alsoKept = try store.put(Array("also kept".utf8))
        let orphan = try store.put(Array("orphan".utf8))
        try Data("notes".utf8).write(to: dir.objects.appendingPathComponent("README"))

        let before = dir.files(under: dir.objects)
        let scan = try store.findOrphans(expected: [kept.sha256, alsoKept.sha256])
        XCTAssertEqual(scan.orphanObjects, [orphan.relativePath])
        XCTAssertEqual(scan.unrecognized, ["README"])
        XCTAssertEqual(scan.temporaryFiles, [])
        XCTAssertEqual(dir.files(under: dir.objects), before)

        XCTAssertTrue(try store.findOrphans(expected: [kept, alsoKept, orphan].map(\.sha256)).orphanObjects.isEmpty)
        XCTAssertEqual(try store.totalStoredBytes(of: [kept, alsoKept, orphan, kept]),
                       kept.storedSize + alsoKept.storedSize + orphan.storedSize)
    }

    func testCompressionLevelChangesStoredSizeNotContent() throws {
        let dir = try TemporaryDirectory()
        // Text-like data compresses very differently between levels 0 and 9.
        let text = Array(String(repeating: "the router sends each token to its top-2 experts; ", count: 400).utf8)
        let stored = try ObjectStore(root: dir.url.appendingPathComponent("l0"), compressionLevel: 0).put(text)
        let best = try ObjectStore(root: dir.url.appendingPathComponent("l9"), compressionLevel: 9).put(text)
        let huffman = try ObjectStore(root: dir.url.appendingPathComponent("h"), strategy: .huffmanOnly).put(text)
        XCTAssertEqual(Set([stored.sha256, best.sha256, huffman.sha256]).count, 1)
        XCTAssertGreaterThan(stored.storedSize, text.count)
        XCTAssertLessThan(best.storedSize, text.count / 20)
        // Huffman-only codes single bytes: smaller than raw, far from what matches achieve.
        XCTAssertLessThan(huffman.storedSize, text.count * 3 / 4)
        XCTAssertGreaterThan(huffman.storedSize, best.storedSize * 5)

        // Any store reads any object: the level and strategy are the writer's business.
        let reader = ObjectStore(root: dir.url.appendingPathComponent("h"), compressionLevel: 1)
        XCTAssertEqual(try reader.get(sha256: huffman.sha256, rawSize: text.count), text)
    }
}

/// `setrlimit`'s resource argument is an enum on Glibc and an Int32 on Darwin.
#if canImport(Glibc)
let resourceFSIZE = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
#else
let resourceFSIZE = RLIMIT_FSIZE
#endif
