import Foundation

/// Numbers for choosing the zlib level: how much smaller fp32 weights get, and how fast
/// they go in and out, at each level. Printed figures, not a timed test.
public enum CheckpointBenchmark {
    public struct Result: Codable, Equatable, Sendable {
        public var level: Int
        public var strategy: CompressionStrategy
        /// Raw bytes per repetition (all tensors together).
        public var rawBytes: Int
        /// zlib bytes for the same tensors.
        public var storedBytes: Int
        /// raw / stored: 1.0 means no gain, 1.25 means objects are 80% of raw.
        public var compressionRatio: Double
        /// In-memory deflate, MB (10^6 bytes) of raw input per second; best repetition.
        public var compressMBps: Double
        /// In-memory bounded inflate, MB of raw output per second; best repetition.
        public var decompressMBps: Double
        /// `ObjectStore.put` on a fresh store: SHA-256, deflate, write, fsync, rename.
        public var putMBps: Double
        /// `ObjectStore.get(into:)`: read, bounded inflate, SHA-256 check.
        public var getMBps: Double

        enum CodingKeys: String, CodingKey {
            case level, strategy
            case rawBytes = "raw_bytes"
            case storedBytes = "stored_bytes"
            case compressionRatio = "compression_ratio"
            case compressMBps = "compress_mb_per_s"
            case decompressMBps = "decompress_mb_per_s"
            case putMBps = "put_mb_per_s"
            case getMBps = "get_mb_per_s"
        }
    }

    /// Measures each level on tensors of the given sizes (bytes, rounded down to whole
    /// floats) filled with N(0, `standardDeviation`) values, the usual initialisation of
    /// transformer weights. Timings are the best of `repetitions`, so that other work on
    /// a shared machine inflates them as little as possible. With `huffmanOnly` a last
    /// row measures the `.huffmanOnly` strategy (at level 6, which it ignores).
    public static func measure(
        tensorBytes: [Int] = [1 << 20, 4 << 20, 8 << 20],
        levels: [Int] = [1, 6, 9],
        huffmanOnly: Bool = true,
        standardDeviation: Float = 0.02,
        repetitions: Int = 3,
        seed: UInt64 = 0,
        scratchDirectory: URL = FileManager.default.temporaryDirectory
    ) throws -> [Result] {
        precondition(repetitions >= 1)
        var generator = SplitMix64(seed: seed)
        let tensors = tensorBytes.map { bytes in
            (0..<bytes / MemoryLayout<Float>.size).map { _ in generator.nextGaussian() * standardDeviation }
        }
        let rawBytes = tensors.reduce(0) { $0 + $1.count * MemoryLayout<Float>.size }
        let clock = ContinuousClock()

        let settings = levels.map { ($0, CompressionStrategy.standard) } + (huffmanOnly ? [(6, .huffmanOnly)] : [])
        var results: [Result] = []
        for (level, strategy) in settings {
            var compressed: [[UInt8]] = []
            let compressTime = try best(of: repetitions, clock: clock) {
                compressed = try tensors.map { tensor in
                    try tensor.withUnsafeBytes { try deflateToArray($0, level: level, strategy: strategy) }
                }
            }
            let storedBytes = compressed.reduce(0) { $0 + $1.count }

            var outputs = tensors.map { [Float](repeating: 0, count: $0.count) }
            let decompressTime = try best(of: repetitions, clock: clock) {
                for index in tensors.indices {
                    try compressed[index].withUnsafeBytes { source in
                        try outputs[index].withUnsafeMutableBytes { destination in
                            try inflateFromMemory(source, into: destination)
                        }
                    }
                }
            }
            guard outputs == tensors else {
                throw CheckpointError.invalidTensor(name: "benchmark", reason: "round trip at level \(level), \(strategy) changed the data")
            }

            // End to end through the store; a fresh directory per repetition so every put
            // really writes.
            var putTime = Duration.seconds(1_000_000)
            var getTime = Duration.seconds(1_000_000)
            for _ in 0..<repetitions {
                let root = scratchDirectory.appendingPathComponent("moerec-ckpt-bench-\(UUID().uuidString)")
                defer { try? FileManager.default.removeItem(at: root) }
                let store = ObjectStore(root: root, compressionLevel: level, strategy: strategy)
                var refs: [BlobRef] = []
                putTime = min(putTime, try clock.measure {
                    refs = try tensors.map { try store.put($0) }
                })
                getTime = min(getTime, try clock.measure {
                    for (index, ref) in refs.enumerated() {
                        try outputs[index].withUnsafeMutableBytes {
                            try store.get(sha256: ref.sha256, rawSize: ref.rawSize, into: $0)
                        }
                    }
                })
            }

            results.append(Result(
                level: level, strategy: strategy, rawBytes: rawBytes, storedBytes: storedBytes,
                compressionRatio: Double(rawBytes) / Double(max(storedBytes, 1)),
                compressMBps: megabytesPerSecond(rawBytes, compressTime),
                decompressMBps: megabytesPerSecond(rawBytes, decompressTime),
                putMBps: megabytesPerSecond(rawBytes, putTime),
                getMBps: megabytesPerSecond(rawBytes, getTime)))
        }
        return results
    }

    // MARK: Helpers

    private static func best(of repetitions: Int, clock: ContinuousClock, _ body: () throws -> Void) throws -> Duration {
        var fastest = Duration.seconds(1_000_000)
        for _ in 0..<repetitions { fastest = min(fastest, try clock.measure(body)) }
        return fastest
    }

    private static func megabytesPerSecond(_ bytes: Int, _ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        let elapsed = Double(seconds) + Double(attoseconds) * 1e-18
        return elapsed > 0 ? Double(bytes) / 1e6 / elapsed : .infinity
    }

    private static func deflateToArray(_ input: UnsafeRawBufferPointer, level: Int,
                                       strategy: CompressionStrategy) throws -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(input.count + input.count / 1000 + 64)
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        try Zlib.deflate(input, level: Int32(level), strategy: strategy, chunk: chunk) { output.append(contentsOf: $0) }
        return output
    }

    private static func inflateFromMemory(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws {
        // Hand inflate the compressed bytes in 256 KiB reads, as the file path does.
        var offset = 0
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)
        defer { input.deallocate() }
        try Zlib.inflateBounded(
            expectedSize: destination.count, inputBuffer: input,
            read: { buffer in
                let n = min(buffer.count, source.count - offset)
                if n > 0 { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<offset + n])) }
                offset += n
                return n
            },
            window: { produced in
                UnsafeMutableRawBufferPointer(rebasing: destination[produced..<min(destination.count, produced + Zlib.maxChunk)])
            },
            consume: { _ in })
    }
}

/// Deterministic normal samples for the benchmark data (SplitMix64 + Box–Muller), so
/// figures from different machines describe the same bytes.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: never 0, so the logarithm below is finite.
    mutating func nextUnit() -> Double {
        (Double(next() >> 11) + 1) / Double(1 << 53)
    }

    mutating func nextGaussian() -> Float {
        let u1 = nextUnit(), u2 = nextUnit()
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}
