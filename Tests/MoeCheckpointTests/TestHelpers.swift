import Foundation
import MoeCheckpoint
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh directory under the system temporary directory, removed when the test ends.
final class TemporaryDirectory {
    let url: URL

    init(_ label: String = #function) throws {
        let safe = label.filter { $0.isLetter || $0.isNumber }
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("moerec-ckpt-\(safe)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    var objects: URL { url.appendingPathComponent("objects", isDirectory: true) }

    /// Every regular file below `root`, as paths relative to it, sorted.
    func files(under root: URL) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: root.path) else { return [] }
        var result: [String] = []
        while let relative = enumerator.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: root.path + "/" + relative, isDirectory: &isDirectory),
               !isDirectory.boolValue {
                result.append(relative)
            }
        }
        return result.sorted()
    }
}

/// Deterministic test data: SplitMix64, so failures reproduce.
struct TestRandom {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Roughly N(0, 0.02)-sized values (sum of uniforms), enough to look like weights.
    mutating func weights(_ count: Int) -> [Float] {
        (0..<count).map { _ in
            var sum = 0.0
            for _ in 0..<4 { sum += Double(next() >> 11) / Double(1 << 53) - 0.5 }
            return Float(sum * 0.035)
        }
    }

    /// Uniformly random bit patterns: incompressible.
    mutating func bits(_ count: Int) -> [Float] {
        (0..<count).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: next())) }
    }
}

func bitPatterns(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

func bitPatterns(_ values: UnsafeBufferPointer<Float>) -> [UInt32] { values.map(\.bitPattern) }

/// Rewrites a stored object file in place. Objects are written read-only (0444), as they
/// are immutable; a test that damages one on purpose makes it writable first.
func modifyFile(_ url: URL, _ change: (inout [UInt8]) -> Void) throws {
    XCTAssertEqual(chmod(url.path, 0o644), 0)
    var bytes = [UInt8](try Data(contentsOf: url))
    change(&bytes)
    try Data(bytes).write(to: url)
}

/// Puts `bytes` under the object name `sha256`, whatever they are (to plant crafted or
/// swapped objects).
func plantObject(_ bytes: [UInt8], as sha256: String, in store: ObjectStore) throws {
    let url = store.url(for: sha256)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    if FileManager.default.fileExists(atPath: url.path) {
        XCTAssertEqual(chmod(url.path, 0o644), 0)
    }
    try Data(bytes).write(to: url)
}

/// Builds, bit by bit, a zlib stream (RFC 1950/1951) that inflates to `1 + 258 * repeats`
/// zero bytes: one literal zero, then `repeats` back-references of length 258 at
/// distance 1, in a single fixed-Huffman block. 13 bits per 258 output bytes, so a
/// 1.6 MB stream inflates to 258 MB. Written independently of the code under test.
func craftedZeroStream(repeats: Int) -> (stream: [UInt8], inflatedSize: Int) {
    var bytes: [UInt8] = [0x78, 0x01] // CM=8, CINFO=7, FLEVEL=0; 0x7801 is a multiple of 31
    var bitBuffer: UInt64 = 0
    var bitCount = 0

    // Header fields go in least significant bit first.
    func bits(_ value: UInt64, _ count: Int) {
        bitBuffer |= value << UInt64(bitCount)
        bitCount += count
        while bitCount >= 8 {
            bytes.append(UInt8(truncatingIfNeeded: bitBuffer))
            bitBuffer >>= 8
            bitCount -= 8
        }
    }
    // Huffman codes go in most significant bit first.
    func code(_ value: UInt64, _ length: Int) {
        var reversed: UInt64 = 0
        for i in 0..<length where value & (1 << UInt64(i)) != 0 { reversed |= 1 << UInt64(length - 1 - i) }
        bits(reversed, length)
    }

    bits(1, 1)            // BFINAL
    bits(1, 2)            // BTYPE = 01, fixed Huffman codes
    code(0b0011_0000, 8)  // literal 0x00 (literals 0-143 are 0x30 + value, 8 bits)
    for _ in 0..<repeats {
        code(0b1100_0101, 8) // length symbol 285 = 258 bytes (symbols 280-287: 0xC0 + n, 8 bits)
        code(0, 5)           // distance symbol 0 = distance 1
    }
    code(0, 7)            // end of block, symbol 256
    if bitCount > 0 { bits(0, 8 - bitCount) }

    // Adler-32 of n zero bytes: s1 stays 1, s2 adds 1 per byte.
    let size = 1 + 258 * repeats
    let adler = UInt32(size % 65521) << 16 | 1
    bytes += [UInt8(adler >> 24), UInt8(truncatingIfNeeded: adler >> 16),
              UInt8(truncatingIfNeeded: adler >> 8), UInt8(truncatingIfNeeded: adler)]
    return (bytes, size)
}

/// Starts a fresh measurement of peak resident memory where the system allows it. On
/// Linux, writing 5 to clear_refs resets the process's high-water mark (VmHWM), so a later
/// `peakResidentBytes()` sees only what happened since; elsewhere the peak is since start.
func resetPeakResident() {
    #if os(Linux)
    let fd = open("/proc/self/clear_refs", O_WRONLY)
    if fd >= 0 {
        _ = write(fd, "5", 1)
        close(fd)
    }
    #endif
}

/// Peak resident set size in bytes (since `resetPeakResident()` on Linux).
func peakResidentBytes() -> Int {
    #if os(Linux)
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
       let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
       let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") {
        return kilobytes * 1024
    }
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return usage.ru_maxrss * 1024 // kilobytes on Linux
    #else
    var usage = rusage()
    getrusage(RUSAGE_SELF, &usage)
    return usage.ru_maxrss        // bytes on macOS
    #endif
}

/// Asserts that `body` throws a `CheckpointError` and hands it back for closer checks.
func assertCheckpointError<T>(
    _ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line
) -> CheckpointError? {
    do {
        _ = try body()
        XCTFail("expected a CheckpointError, got success", file: file, line: line)
        return nil
    } catch let error as CheckpointError {
        return error
    } catch {
        XCTFail("expected a CheckpointError, got \(error)", file: file, line: line)
        return nil
    }
}
