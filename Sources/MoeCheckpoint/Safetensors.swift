import Foundation
import MoeJSON

/// The safetensors file format (Hugging Face): an 8-byte little-endian header length, a
/// JSON header mapping each tensor name to its dtype, shape and byte range in the data
/// section (plus an optional `__metadata__` object of string values), then the data,
/// tensors stored contiguously, row-major, little-endian. The header here is written with
/// keys in the order given and padded with spaces to a multiple of 8 bytes.
public enum Safetensors {
    public struct Tensor {
        public let name: String
        public let shape: [Int]
        public let values: [Float]
        public init(name: String, shape: [Int], values: [Float]) {
            self.name = name; self.shape = shape; self.values = values
        }
    }

    /// The file's bytes: header and F32 data of `tensors` in order.
    public static func encode(_ tensors: [Tensor], metadata: [(String, String)]) throws -> [UInt8] {
        var header = "{\"__metadata__\":{" + metadata.map { "\(JSONString.quoted($0.0)):\(JSONString.quoted($0.1))" }.joined(separator: ",") + "}"
        var offset = 0
        for t in tensors {
            guard t.values.count == t.shape.reduce(1, *) else {
                throw CheckpointError.invalidTensor(name: t.name, reason: "\(t.values.count) values for shape \(t.shape)")
            }
            let end = offset + 4 * t.values.count
            header += ",\(JSONString.quoted(t.name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out += headerBytes
        for t in tensors {
            t.values.withUnsafeBufferPointer { buffer in
                for v in buffer { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            }
        }
        return out
    }
}
