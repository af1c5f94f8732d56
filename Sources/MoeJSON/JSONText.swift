/// The one JSON string escaper, used by the canonical writer and by the ordered printers.
///
/// A string is written in double quotes; `"` and `\` become `\"` and `\\`; newline,
/// carriage return and tab become `\n`, `\r`, `\t`; every other control character
/// U+0000–U+001F becomes `\u00XX` with lowercase hex digits. Everything else — `/`, DEL and
/// every non-ASCII character — is written as its literal UTF-8 bytes, unnormalised.
public enum JSONString {
    /// Appends `s` as a quoted JSON string literal.
    public static func write(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x00..<0x20:
                out += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")]
                appendHex(byte, to: &out)
            default:
                // Bytes of multi-byte UTF-8 sequences are all >= 0x80 and pass through intact.
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `s` as a quoted JSON string literal.
    public static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 2)
        write(s, into: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

/// The bytes as lowercase hex, two digits a byte: how digests (run hashes, dataset
/// fingerprints, checkpoint object names) and SQLite blobs are written.
/// Inlinable, so that a caller's sequence (a digest) is walked by code specialised for it.
@inlinable
public func lowercaseHex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.underestimatedCount * 2)
    for byte in bytes { appendHex(byte, to: &out) }
    return String(decoding: out, as: UTF8.self)
}

@usableFromInline
func appendHex(_ byte: UInt8, to out: inout [UInt8]) {
    let digits: StaticString = "0123456789abcdef"
    out.append(digits.utf8Start[Int(byte >> 4)])
    out.append(digits.utf8Start[Int(byte & 0x0F)])
}
