import CKernels
import MoeKernels

/// Inverted dropout whose mask is a pure function of (seed, step, site, element): the
/// backward pass regenerates it instead of storing it.
public struct Dropout: Sendable {
    public let rate: Float
    public let key: UInt64

    public init(rate: Float, rng: CounterRng, purpose: CounterRng.Purpose, step: UInt64, site: UInt64) {
        self.rate = rate
        key = rng.streamKey(purpose, step: step, stream: site)
    }

    public var isActive: Bool { rate > 0 }

    /// x[i] ← x[i]·mask[i]/(1−p) for elements [start, start+count) of the site.
    @inline(__always)
    public func apply(_ x: UnsafeMutablePointer<Float>, count: Int, start: Int = 0) {
        guard rate > 0 else { return }
        moe_dropout(x, count, key, UInt64(start), rate, 1 / (1 - rate))
    }
}
