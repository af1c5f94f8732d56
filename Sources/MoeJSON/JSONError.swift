import Foundation
import MoeErrors

/// Every failure of reading or writing JSON. Positions are 1-based; a line ends at LF and a
/// column counts bytes from the start of its line.
public enum JSONError: MoeError, Equatable, Sendable, LocalizedError {
    /// Text that is not JSON (or nests deeper than allowed); the position is where parsing
    /// stopped.
    case syntax(reason: String, line: Int, column: Int)
    /// An object names a key twice; the position is the second occurrence's opening quote.
    case duplicateKey(String, line: Int, column: Int)
    /// NaN or an infinity cannot be written in canonical JSON.
    case nonFiniteNumber(String)
    /// A value the encoder cannot represent (an integer beyond Int64, a value that encodes
    /// nothing).
    case unencodableValue(String)

    public var description: String {
        switch self {
        case let .syntax(reason, line, column):
            return "\(reason) at line \(line), column \(column)"
        case let .duplicateKey(key, line, column):
            return "duplicate key \(JSONString.quoted(key)) at line \(line), column \(column)"
        case let .nonFiniteNumber(value):
            return "\(value) cannot be written in canonical JSON (only finite numbers)"
        case let .unencodableValue(reason):
            return "value cannot be represented as JSON: \(reason)"
        }
    }

    public var errorDescription: String? { description }

    /// Text that is not JSON, or a number JSON cannot carry, came from the user; a value
    /// that cannot be encoded at all is a defect of moerec.
    public var exitMeaning: ExitMeaning {
        if case .unencodableValue = self { return .checkFailed }
        return .badInput
    }
}
