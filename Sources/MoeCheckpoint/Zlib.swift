import CZlib
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a stream could not be inflated to the expected bytes. Internal: `ObjectStore` turns
/// these into `CheckpointError`s that name the object.
enum InflateFailure: Error, Equatable {
    case truncated
    case invalidData(String)
    case trailingData
    case tooLarge(limit: Int)
    case tooSmall(produced: Int)
}

/// How deflate looks for redundancy. Either way the object is a standard zlib stream that
/// any inflater reads; only the writer's speed and the stored size change.
public enum CompressionStrategy: String, Codable, Sendable {
    /// zlib's default: LZ77 matches plus Huffman coding, effort set by the level.
    case standard
    /// Huffman coding of single bytes, no match search (`Z_HUFFMAN_ONLY`). For fp32
    /// weights the gain comes from the skewed sign/exponent byte, not from repeats, so this
    /// stores about the same bytes several times faster (see `CheckpointBenchmark`).
    case huffmanOnly = "huffman_only"
}

/// Thin wrappers over zlib's streaming API. Both directions work in bounded memory:
/// deflate hands out fixed-size output chunks, inflate writes only into windows the
/// caller provides. zlib's own `compress`/`uncompress` are not used because they need the
/// whole output buffer up front, and `uncompress` trusts the caller's idea of its size.
enum Zlib {
    /// zlib counts in `uInt` (32 bits); feeding at most 1 GiB per call keeps every count
    /// representable without caring about the exact limit.
    static let maxChunk = 1 << 30

    /// Compresses `input` as one zlib stream (RFC 1950: header, deflate data, Adler-32),
    /// passing each filled piece of `chunk` to `emit`.
    static func deflate(
        _ input: UnsafeRawBufferPointer,
        level: Int32,
        strategy: CompressionStrategy,
        chunk: UnsafeMutableRawBufferPointer,
        emit: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        precondition(chunk.count > 0 && chunk.count <= maxChunk)
        var stream = z_stream()
        // windowBits 15 and memLevel 8 are zlib's defaults; only the strategy is ours.
        let zlibStrategy = strategy == .huffmanOnly ? Z_HUFFMAN_ONLY : Z_DEFAULT_STRATEGY
        let initResult = deflateInit2_(&stream, level, Z_DEFLATED, 15, 8, zlibStrategy,
                                       zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        try checkInit(initResult, "deflateInit")
        defer { deflateEnd(&stream) }

        var offset = 0
        var flush: Int32
        repeat {
            let take = min(input.count - offset, maxChunk)
            // zlib's API is not const-correct; deflate only reads from next_in.
            stream.next_in = take == 0
                ? nil
                : UnsafeMutablePointer(mutating: (input.baseAddress! + offset).assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(take)
            offset += take
            flush = offset == input.count ? Z_FINISH : Z_NO_FLUSH
            // Drain until deflate leaves room in the output: then it has consumed all input
            // (or, with Z_FINISH, written the whole stream).
            var result: Int32
            repeat {
                stream.next_out = chunk.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(chunk.count)
                result = CZlib.deflate(&stream, flush)
                let produced = chunk.count - Int(stream.avail_out)
                if produced > 0 {
                    try emit(UnsafeRawBufferPointer(rebasing: chunk[..<produced]))
                }
            } while stream.avail_out == 0 && result != Z_STREAM_END
            // Z_STREAM_ERROR means a misuse of the API, never bad data.
            precondition(result != Z_STREAM_ERROR, "deflate stream state corrupted")
            if flush == Z_FINISH { precondition(result == Z_STREAM_END, "deflate did not finish (code \(result))") }
        } while flush != Z_FINISH
    }

    /// Running out of memory is the only way a correct call can fail to set up a stream;
    /// anything else is a bug here, not a condition to handle.
    private static func checkInit(_ result: Int32, _ call: String) throws {
        if result == Z_MEM_ERROR { throw CheckpointError.io(operation: "zlib \(call)", path: "(memory)", errno: ENOMEM) }
        precondition(result == Z_OK, "\(call) failed with code \(result)")
    }

    /// Inflates one zlib stream whose output must be exactly `expectedSize` bytes.
    ///
    /// - `read` fills the given buffer with compressed bytes and returns how many (0 at end
    ///   of input).
    /// - `window(produced)` returns where the next output goes: at least 1 and at most
    ///   `expectedSize - produced` bytes.
    /// - `consume` sees each piece of output once, in order (for hashing as we go, while
    ///   the bytes are still in cache).
    ///
    /// Once `expectedSize` bytes are out, inflation continues into a tiny probe buffer
    /// only to learn whether the stream really ends there; one more byte is an error. So
    /// a stream that would inflate to gigabytes costs `expectedSize` bytes of output and
    /// no allocation proportional to its true size.
    static func inflateBounded(
        expectedSize: Int,
        inputBuffer: UnsafeMutableRawBufferPointer,
        read: (UnsafeMutableRawBufferPointer) throws -> Int,
        window: (_ produced: Int) -> UnsafeMutableRawBufferPointer,
        consume: (UnsafeRawBufferPointer) -> Void
    ) throws {
        precondition(expectedSize >= 0 && inputBuffer.count > 0 && inputBuffer.count <= maxChunk)
        var stream = z_stream()
        let initResult = inflateInit_(&stream, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        try checkInit(initResult, "inflateInit")
        defer { inflateEnd(&stream) }

        let probe = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
        defer { probe.deallocate() }

        var produced = 0
        var inputEnded = false
        while true {
            var didRead = false
            if stream.avail_in == 0 && !inputEnded {
                let n = try read(inputBuffer)
                didRead = true
                if n == 0 {
                    inputEnded = true
                } else {
                    stream.next_in = inputBuffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.avail_in = uInt(n)
                }
            }

            let probing = produced == expectedSize
            let out = probing ? probe : window(produced)
            precondition(out.count > 0 && out.count <= min(maxChunk, probing ? probe.count : expectedSize - produced))
            stream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(out.count)
            let availInBefore = stream.avail_in

            let result = inflate(&stream, Z_NO_FLUSH)

            let got = out.count - Int(stream.avail_out)
            if got > 0 {
                if probing { throw InflateFailure.tooLarge(limit: expectedSize) }
                consume(UnsafeRawBufferPointer(rebasing: out[..<got]))
                produced += got
            }

            switch result {
            case Z_STREAM_END:
                // A zlib object is exactly one stream; anything after it means the file is
                // not what the writer produced.
                if stream.avail_in > 0 { throw InflateFailure.trailingData }
                if !inputEnded, try read(inputBuffer) > 0 { throw InflateFailure.trailingData }
                if produced != expectedSize { throw InflateFailure.tooSmall(produced: produced) }
                return
            case Z_OK:
                break
            case Z_BUF_ERROR:
                // No progress was possible. Output room is always offered, so inflate wants
                // more input; at end of file that means the stream was cut short.
                if inputEnded && stream.avail_in == 0 { throw InflateFailure.truncated }
            case Z_DATA_ERROR, Z_NEED_DICT:
                let message = stream.msg.map { String(cString: $0) } ?? "invalid deflate data"
                throw InflateFailure.invalidData(message)
            default:
                throw InflateFailure.invalidData("inflate returned code \(result)")
            }

            // Defensive: never spin on a stream that neither consumes nor produces.
            if got == 0 && stream.avail_in == availInBefore && !didRead && stream.avail_in > 0 {
                throw InflateFailure.invalidData("inflate made no progress")
            }
        }
    }
}
