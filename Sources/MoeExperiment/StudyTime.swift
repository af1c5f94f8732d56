import Foundation
import MoeMetricNames
import MoeStore

/// Where the wall time of a set of runs (a study) went, from what the runs recorded:
/// their start and finish times, their wall seconds, and the `timing` series of training
/// steps, evaluations and checkpoints.
///
/// The span runs from the first start to the last finish. With at most P runs at once,
/// the span offers P × span process-seconds; each run's wall time splits into training
/// steps, evaluation, checkpoints and the rest of its process time (set-up, data, the
/// store), and what no run used — process start, planning, baselines, a slot left idle
/// while the last runs finish — is "outside runs".
public struct StudyTime: Equatable {
    public var runs: Int
    public var span: Double
    public var processes: Int
    public var training: Double
    public var evaluation: Double
    public var checkpoints: Double
    /// Runs whose evaluation and checkpoint times were not recorded (trained by a moerec
    /// before they were): their time is in `otherInRuns`.
    public var runsWithoutPhaseTimes: Int
    public var otherInRuns: Double
    public var outsideRuns: Double

    public var slotSeconds: Double { span * Double(processes) }

    /// Reads the completed runs of `selection` that recorded start and finish times.
    public static func measure(store: Store, selection: RunSelection) throws -> StudyTime? {
        var completed = selection
        completed.status = .completed
        let runs = try store.runs(completed).filter { $0.startedAt != nil && $0.finishedAt != nil && $0.wallSeconds != nil }
        guard !runs.isEmpty else { return nil }
        let steps = try store.seriesValues(.sum, name: MetricName.stepTime, split: Split.timing, of: completed)
        let evals = try store.seriesValues(.sum, name: MetricName.evalTime, split: Split.timing, of: completed)
        let saves = try store.seriesValues(.sum, name: MetricName.checkpointTime, split: Split.timing, of: completed)
        // An interval per run: [finish − wall, finish], so that a resumed run counts the
        // time it trained, not the gap between its first start and its finish.
        var intervals: [(start: Double, end: Double)] = []
        for run in runs {
            guard let end = Timestamp.seconds(run.finishedAt!) else { continue }
            intervals.append((end - run.wallSeconds!, end))
        }
        let start = intervals.map(\.start).min()!, end = intervals.map(\.end).max()!
        // The most runs at once, from a sweep over the interval ends.
        var events = intervals.flatMap { [($0.start, 1), ($0.end, -1)] }
        events.sort { ($0.0, $0.1) < ($1.0, $1.1) }
        var active = 0, peak = 0
        for (_, delta) in events { active += delta; peak = max(peak, active) }
        var t = StudyTime(runs: runs.count, span: end - start, processes: max(peak, 1), training: 0, evaluation: 0,
                          checkpoints: 0, runsWithoutPhaseTimes: 0, otherInRuns: 0, outsideRuns: 0)
        var wall = 0.0
        for run in runs {
            wall += run.wallSeconds!
            t.training += steps[run.hash] ?? 0
            t.evaluation += evals[run.hash] ?? 0
            t.checkpoints += saves[run.hash] ?? 0
            if run.kind != .baseline && evals[run.hash] == nil { t.runsWithoutPhaseTimes += 1 }
        }
        t.otherInRuns = max(0, wall - t.training - t.evaluation - t.checkpoints)
        t.outsideRuns = max(0, t.slotSeconds - wall)
        return t
    }
}

/// The store's UTC timestamps (`2025-01-31T12:00:00.000Z`) as seconds since 1970.
enum Timestamp {
    static func seconds(_ text: String) -> Double? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text)?.timeIntervalSince1970
    }
}
