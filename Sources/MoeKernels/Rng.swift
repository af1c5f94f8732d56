/// A counter-based generator: every random number is a pure function of
/// (seed, purpose, step, index), so a draw never depends on which thread made it,
/// on how many draws came before, or on whether the run was resumed.
public struct CounterRng: Sendable {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// Purposes keep independent streams apart (initialisation vs data order vs dropout).
    public enum Purpose: UInt64, Sendable {
        case initialisation = 1, dataOrder = 2, dropout = 3, expertDropout = 4, evalSample = 5, expertChoice = 6, test = 99
    }

    @inlinable @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        // SplitMix64 finaliser: a bijection with full avalanche.
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 64 random bits for (purpose, step, index); `stream` separates sites (e.g. layer numbers).
    @inline(__always)
    public func bits(_ purpose: Purpose, step: UInt64, stream: UInt64 = 0, index: UInt64) -> UInt64 {
        let key = CounterRng.mix(seed ^ CounterRng.mix(purpose.rawValue &* 0x1000_0000_01B3 ^ CounterRng.mix(stream ^ CounterRng.mix(step))))
        return CounterRng.mix(key ^ index)
    }

    /// A base key for a whole stream, so hot loops mix only the index.
    @inline(__always)
    public func streamKey(_ purpose: Purpose, step: UInt64, stream: UInt64 = 0) -> UInt64 {
        CounterRng.mix(seed ^ CounterRng.mix(purpose.rawValue &* 0x1000_0000_01B3 ^ CounterRng.mix(stream ^ CounterRng.mix(step))))
    }

    @inlinable @inline(__always)
    public static func uniform(key: UInt64, index: UInt64) -> Float {
        // Top 24 bits → a float in [0, 1) with every value exactly representable.
        Float(mix(key ^ index) >> 40) * (1.0 / 16_777_216.0)
    }

    public func uniform(_ purpose: Purpose, step: UInt64, stream: UInt64 = 0, index: UInt64) -> Float {
        CounterRng.uniform(key: streamKey(purpose, step: step, stream: stream), index: index)
    }

    /// Standard normal by Box–Muller over two independent counter draws.
    public func normal(_ purpose: Purpose, step: UInt64, stream: UInt64 = 0, index: UInt64) -> Float {
        let key = streamKey(purpose, step: step, stream: stream)
        let u1 = Double((CounterRng.mix(key ^ (index << 1)) >> 11) + 1) * (1.0 / 9_007_199_254_740_993.0)
        let u2 = Double(CounterRng.mix(key ^ (index << 1 | 1)) >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2.0 * _log(u1)).squareRoot() * _cos(2.0 * Double.pi * u2))
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Darwin
@inline(__always) func _log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
