import Foundation

/// Reads a file line by line in fixed-size chunks, never holding more than one line plus
/// one chunk, so an over-long line is rejected after reading about `maxLineBytes` bytes
/// instead of after building a giant string.
struct LineReader {
    static let chunkSize = 1 << 20

    let path: String
    let maxLineBytes: Int
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0
    /// Where the newline search resumes, so a long line is scanned once.
    private var scanned = 0
    private var atEnd = false
    private(set) var lineNumber = 0

    init(url: URL, maxLineBytes: Int) throws {
        path = url.path
        self.maxLineBytes = maxLineBytes
        handle = try RegularFile.openForReading(path)
    }

    /// The next line without its terminating newline, or nil at the end of the file.
    mutating func next() throws -> ArraySlice<UInt8>? {
        while true {
            if let newline = findNewline() {
                let line = buffer[start..<newline]
                start = newline + 1
                scanned = start
                lineNumber += 1
                if line.count > maxLineBytes { throw tooLong() }
                return line
            }
            if buffer.count - start > maxLineBytes {
                lineNumber += 1
                throw tooLong()
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                let line = buffer[start...]
                start = buffer.count
                lineNumber += 1
                return line
            }
            try refill()
        }
    }

    private func tooLong() -> DataError {
        .invalidLine(file: path, line: lineNumber, problem: .lineTooLong(limit: maxLineBytes))
    }

    private mutating func findNewline() -> Int? {
        let end = buffer.count
        let found: Int? = buffer.withUnsafeBufferPointer { bytes in
            var i = scanned
            while i < end {
                if bytes[i] == 10 { return i }
                i += 1
            }
            return nil
        }
        scanned = found ?? end
        return found
    }

    private mutating func refill() throws {
        if start > 0 {
            buffer.removeSubrange(0..<start)
            scanned -= start
            start = 0
        }
        let chunk: Data?
        do {
            chunk = try handle.read(upToCount: Self.chunkSize)
        } catch {
            throw DataError.unreadable(path: path, reason: "\(error.localizedDescription)")
        }
        if let chunk, !chunk.isEmpty {
            buffer.append(contentsOf: chunk)
        } else {
            atEnd = true
            try? handle.close()
        }
    }
}
