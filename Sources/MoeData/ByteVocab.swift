/// The byte-level vocabulary: ids 0...255 are bytes, then three specials. The model may
/// use a larger vocabulary; these ids are fixed.
public enum ByteVocab {
    public static let pad: Int32 = 256
    public static let bos: Int32 = 257
    public static let eos: Int32 = 258
    public static let size = 259

    /// BOS followed by the UTF-8 bytes of `text`, truncated to `maxLength` tokens and padded
    /// with PAD to exactly `maxLength`. `length` counts the real (non-PAD) tokens.
    public static func encodeClassification(text: String, maxLength: Int) -> (tokens: [Int32], length: Int) {
        var tokens = [Int32](repeating: pad, count: maxLength)
        let length = tokens.withUnsafeMutableBufferPointer {
            encodeClassification(text: text, into: $0)
        }
        return (tokens, length)
    }

    /// The same encoding written into `out` (its count is the max length), for callers that
    /// fill a preallocated batch buffer. Returns the number of real tokens.
    @discardableResult
    public static func encodeClassification(text: String, into out: UnsafeMutableBufferPointer<Int32>) -> Int {
        precondition(out.count >= 1, "maxLength must be at least 1 (room for BOS)")
        out[0] = bos
        var length = 1
        for byte in text.utf8 {
            if length == out.count { break }
            out[length] = Int32(byte)
            length += 1
        }
        for k in length..<out.count { out[k] = pad }
        return length
    }
}
