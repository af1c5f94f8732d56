/// One fp32 allocation with named, shaped views into it: parameters, gradients,
/// optimizer moments and activations each live in one of these, allocated once.
public final class FloatArena: @unchecked Sendable {
    public let count: Int
    public let base: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { base.deallocate() }

    public func zero() { base.update(repeating: 0, count: count) }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: base, count: count) }
}

/// Bump allocator used while planning an arena's layout: hands out offsets in order.
public struct ArenaPlanner {
    public private(set) var size = 0
    public init() {}
    /// Reserves `count` floats, aligned to 16 floats (64 bytes) so every view starts on a cache line.
    public mutating func reserve(_ count: Int) -> Int {
        let offset = size
        size += (count + 15) & ~15
        return offset
    }
}
