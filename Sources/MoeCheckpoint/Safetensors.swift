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

extension Safetensors {
    /// What `moerec export --format safetensors` writes for one checkpoint: every parameter
    /// tensor of `manifest` (no optimizer state), in manifest order, each read from its
    /// object and checked against its SHA-256, with the run hash, step and resolved config
    /// in the metadata. Returns the file's bytes and how many tensors and parameters it holds.
    public static func exportParameters(objects: ObjectStore, manifest: CheckpointManifest, runHash: String,
                                        configJSON: String) throws -> (bytes: [UInt8], tensors: Int, parameters: Int) {
        var buffers: [(entry: TensorEntry, values: UnsafeMutableBufferPointer<Float>)] = []
        defer { for b in buffers { b.values.deallocate() } }
        _ = try readCheckpoint(objects: objects, manifest: manifest) { entry in
            guard manifest.tensors.contains(entry) else { return nil }
            let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: entry.elementCount)
            buffers.append((entry, values))
            return values
        }
        let tensors = buffers.map { Tensor(name: $0.entry.name, shape: $0.entry.shape, values: Array($0.values)) }
        let bytes = try encode(tensors, metadata: [("format", "pt"), ("moerec_run", runHash),
                                                   ("moerec_step", String(manifest.step)), ("moerec_config", configJSON)])
        return (bytes, tensors.count, tensors.reduce(0) { $0 + $1.values.count })
    }

    /// The config file written beside an exported `FILE.safetensors`: `FILE.config.json`,
    /// holding the resolved config and a newline.
    public static func configPath(besideExport path: String) -> String {
        String(path.dropLast(".safetensors".count)) + ".config.json"
    }

    public static func configFileText(_ configJSON: String) -> String { configJSON + "\n" }
}
