/// Where a run's measurements go (series named by `Split` and `MetricName`). The store implements this; training never imports it.
public protocol MetricSink: AnyObject {
    func record(step: Int, split: String, name: String, value: Double)
    /// Called after each evaluation and before each checkpoint: make recorded points durable.
    func flush() throws
}

/// Keeps every point in memory (tests, `bench`) and optionally prints evaluations.
public final class MemorySink: MetricSink {
    public struct Point: Equatable, Sendable {
        public let step: Int, split: String, name: String, value: Double
    }
    public private(set) var points: [Point] = []
    let printer: ((String) -> Void)?

    public init(printer: ((String) -> Void)? = nil) { self.printer = printer }

    public func record(step: Int, split: String, name: String, value: Double) {
        points.append(Point(step: step, split: split, name: name, value: value))
    }

    public func flush() throws {}

    public func series(_ name: String, split: String) -> [(step: Int, value: Double)] {
        points.filter { $0.name == name && $0.split == split }.map { ($0.step, $0.value) }
    }
}
