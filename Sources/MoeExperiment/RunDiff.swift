import Foundation
import MoeCheckpoint
import MoeJSON
import MoeMetricNames
import MoeStore
import MoeTrain

/// What differs between two runs: config keys, lineage, metrics, final parameters.
public struct RunDiff {
    public struct KeyChange { public let key: String, a: String, b: String }
    public struct MetricDelta { public let split: String, name: String; public let finalA: Double?, finalB: Double?, bestA: Double?, bestB: Double? }
    public struct GroupChange { public let group: String, tensors: Int, changed: Int; public let maxAbsDelta: Double }
    public let a: String, b: String
    public let configChanges: [KeyChange]
    public let lineageA: [String], lineageB: [String]
    public let metrics: [MetricDelta]
    /// First step at which any shared, deterministic series differs (nil: identical where shared).
    public let firstDifferentStep: (step: Int, split: String, name: String)?
    public let groups: [GroupChange]
    /// The experts each run trained, for expert-specialized runs (nil otherwise).
    public let expertsA: ExpertChoice?, expertsB: ExpertChoice?

    public static func compute(store: Store, a: String, b: String) throws -> RunDiff {
        guard let ra = try store.run(hash: a), let rb = try store.run(hash: b) else { throw InputError("unknown run") }
        let ca = try JSONValue(parsing: ra.configJSON).objectValue ?? [:], cb = try JSONValue(parsing: rb.configJSON).objectValue ?? [:]
        var changes: [KeyChange] = []
        for key in Set(ca.keys).union(cb.keys).sorted() where ca[key] != cb[key] {
            changes.append(KeyChange(key: key, a: ca[key]?.display ?? "—", b: cb[key]?.display ?? "—"))
        }
        let pa = try store.allMetrics(runHash: a).filter { $0.split != Split.timing }
        let pb = try store.allMetrics(runHash: b).filter { $0.split != Split.timing }
        var metrics: [MetricDelta] = []
        let compared = [(Split.val, MetricName.accuracy), (Split.val, MetricName.loss), (Split.train, MetricName.accuracy),
                        (Split.train, MetricName.loss), (Split.test, MetricName.accuracy)]
        for (split, name) in compared {
            let sa = pa.filter { $0.split == split && $0.name == name }.sorted { $0.step < $1.step }
            let sb = pb.filter { $0.split == split && $0.name == name }.sorted { $0.step < $1.step }
            if sa.isEmpty && sb.isEmpty { continue }
            let best: ([MetricPoint]) -> Double? = { s in name == MetricName.accuracy ? s.map(\.value).max() : s.map(\.value).min() }
            metrics.append(MetricDelta(split: split, name: name, finalA: sa.last?.value, finalB: sb.last?.value,
                                       bestA: best(sa), bestB: best(sb)))
        }
        var index: [String: Double] = [:]
        for p in pb { index["\(p.step)\u{1}\(p.split)\u{1}\(p.name)"] = p.value }
        var first: (Int, String, String)? = nil
        for p in pa.sorted(by: { ($0.step, $0.split, $0.name) < ($1.step, $1.split, $1.name) }) {
            if let v = index["\(p.step)\u{1}\(p.split)\u{1}\(p.name)"], v.bitPattern != p.value.bitPattern {
                first = (p.step, p.split, p.name)
                break
            }
        }
        let groups = try tensorChanges(store: store, a: a, b: b)
        return RunDiff(a: a, b: b, configChanges: changes, lineageA: try store.lineage(of: a).map(\.hash),
                       lineageB: try store.lineage(of: b).map(\.hash),
                       metrics: metrics, firstDifferentStep: first, groups: groups,
                       expertsA: ExpertChoice(points: pa), expertsB: ExpertChoice(points: pb))
    }

    /// Per parameter group: tensors compared, tensors that differ, max |Δ| over them. Equal
    /// object hashes mean equal bytes, so only differing tensors are read.
    static func tensorChanges(store: Store, a: String, b: String) throws -> [GroupChange] {
        guard let ka = try store.latestCheckpoint(runHash: a), let kb = try store.latestCheckpoint(runHash: b) else { return [] }
        let objects = ObjectStore(root: Executor.objectsDirectory(forStore: store.path))
        let ma = try CheckpointManifest(json: ka.manifestJSON), mb = try CheckpointManifest(json: kb.manifestJSON)
        let byName = Dictionary(mb.tensors.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        var out: [String: (Int, Int, Double)] = [:]
        for ta in ma.tensors {
            guard let tb = byName[ta.name], tb.rawSize == ta.rawSize else { continue }
            var entry = out[ta.group] ?? (0, 0, 0)
            entry.0 += 1
            if ta.sha256 != tb.sha256 {
                let x = try objects.get(sha256: ta.sha256, rawSize: ta.rawSize, context: ObjectContext(runHash: a, tensorName: ta.name))
                let y = try objects.get(sha256: tb.sha256, rawSize: tb.rawSize, context: ObjectContext(runHash: b, tensorName: tb.name))
                var m = 0.0
                x.withUnsafeBytes { px in y.withUnsafeBytes { py in
                    let fx = px.bindMemory(to: Float.self), fy = py.bindMemory(to: Float.self)
                    for i in 0..<fx.count { m = max(m, Double(abs(fx[i] - fy[i]))) }
                } }
                entry.1 += 1
                entry.2 = max(entry.2, m)
            }
            out[ta.group] = entry
        }
        return out.keys.sorted().map { GroupChange(group: $0, tensors: out[$0]!.0, changed: out[$0]!.1, maxAbsDelta: out[$0]!.2) }
    }
}
