import Foundation
import MoeMetricNames
import MoeStore

/// The experts an expert-specialized run chose, per sparse layer, as its `info` points
/// record them (`Executor.selectExperts`): for `show` and `diff`.
public struct ExpertChoice: Equatable, Sendable {
    /// The model layer (as in `moe<layer>`) and, per expert, its scores and whether it trains.
    public struct Layer: Equatable, Sendable {
        public var layer: Int
        public var selected: [Int]
        public var gate: [Double]
        public var token: [Double]
    }

    public var layers: [Layer]

    /// nil for a run that did not choose experts.
    public static func read(store: Store, run: String) throws -> ExpertChoice? {
        ExpertChoice(points: try store.allMetrics(runHash: run))
    }

    /// The choice recorded among a run's metric points; nil when they record none.
    public init?(points: [MetricPoint]) {
        var byLayer: [Int: (selected: [Int: Bool], gate: [Int: Double], token: [Int: Double])] = [:]
        for p in points where p.split == Split.info && MetricName.isExpertSelection(p.name) {
            // esft.moe<layer>.<what>.<expert>
            let parts = p.name.split(separator: ".")
            guard parts.count == 4, let layer = Int(parts[1].dropFirst(3)), let expert = Int(parts[3]) else { continue }
            var entry = byLayer[layer] ?? ([:], [:], [:])
            switch parts[2] {
            case Substring(MetricName.esftSelected): entry.selected[expert] = p.value != 0
            case "gate": entry.gate[expert] = p.value
            case "token": entry.token[expert] = p.value
            default: break
            }
            byLayer[layer] = entry
        }
        guard !byLayer.isEmpty else { return nil }
        layers = byLayer.keys.sorted().map { layer in
            let e = byLayer[layer]!
            let n = (e.gate.keys.max() ?? -1) + 1
            return Layer(layer: layer, selected: e.selected.filter(\.value).map(\.key).sorted(),
                         gate: (0..<n).map { e.gate[$0] ?? .nan }, token: (0..<n).map { e.token[$0] ?? .nan })
        }
    }

    /// One line per layer: "moe1  trains experts 2, 5 (2 of 8)  gate [0.310 0.050 …]  token […]".
    public var lines: [String] {
        layers.map { l in
            let scores = { (values: [Double]) in values.map { String(format: "%.3f", $0) }.joined(separator: " ") }
            return "moe\(l.layer)  trains experts \(l.selected.map(String.init).joined(separator: ", ")) (\(l.selected.count) of \(l.gate.count))"
                + "  gate [\(scores(l.gate))]  token [\(scores(l.token))]"
        }
    }
}
