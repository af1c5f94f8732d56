import Foundation

/// A line chart drawn as inline SVG: axes with "nice" ticks, grid lines, axis titles, a
/// legend at the right, optional error bars and point markers. No scripts, no fonts or
/// styles from outside the page.
struct LineChart {
    struct Series {
        var color: String
        var dashed = false
        var points: [(x: Double, y: Double)]
        /// ± half-lengths of error bars, one per point (NaN: none).
        var errors: [Double]? = nil
        var dots = false
        /// Hover text of the line.
        var label: String
    }

    struct Marker {
        var x: Double
        var y: Double
        var color: String
        var label: String
    }

    enum LegendSymbol { case line(dashed: Bool), lineWithDot, triangle }

    struct LegendEntry {
        var label: String
        var color: String
        var symbol: LegendSymbol
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series] = []
    var markers: [Marker] = []
    var legend: [LegendEntry] = []
    /// Horizontal reference lines across the plot (e.g. a baseline's accuracy), labelled at their right end.
    var references: [Reference] = []

    struct Reference {
        var y: Double
        var label: String
    }
    /// Categorical x axis: tick positions and labels (overrides the numeric ticks).
    var xCategories: [(x: Double, label: String)]? = nil
    var width = 660.0
    var height = 360.0

    let left = 64.0, right = 176.0, top = 36.0, bottom = 52.0

    /// Tick step of 1, 2 or 5 × 10^k giving about `count` intervals over `span`.
    static func niceStep(_ span: Double, count: Double = 5) -> Double {
        guard span > 0, span.isFinite else { return 1 }
        let raw = span / count
        let magnitude = pow(10, floor(log10(raw)))
        let fraction = raw / magnitude
        let nice: Double = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
        return nice * magnitude
    }

    /// The domain widened to whole ticks, and the ticks.
    static func axis(_ values: [Double], padFraction: Double = 0) -> (low: Double, high: Double, ticks: [Double], step: Double) {
        let finite = values.filter(\.isFinite)
        var lo = finite.min() ?? 0, hi = finite.max() ?? 1
        if lo == hi {
            let pad = lo == 0 ? 1 : abs(lo) * 0.1
            lo -= pad
            hi += pad
        }
        let pad = (hi - lo) * padFraction
        lo -= pad
        hi += pad
        let step = niceStep(hi - lo)
        let low = floor(lo / step) * step, high = ceil(hi / step) * step
        var ticks: [Double] = []
        var t = low
        while t <= high + step * 1e-9 {
            ticks.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return (low, high, ticks, step)
    }

    static func tickLabel(_ value: Double, step: Double) -> String {
        let decimals = max(0, Int(-floor(log10(step) + 1e-9)))
        return String(format: "%.\(decimals)f", value)
    }

    static func f(_ x: Double) -> String { String(format: "%.1f", x) }

    func svg() -> String {
        let plotW = width - left - right, plotH = height - top - bottom
        let allX = series.flatMap { $0.points.map(\.x) } + markers.map(\.x) + (xCategories?.map(\.x) ?? [])
        var allY = series.flatMap { $0.points.map(\.y) } + markers.map(\.y) + references.map(\.y).filter(\.isFinite)
        for s in series {
            guard let errors = s.errors else { continue }
            for (p, e) in zip(s.points, errors) where e.isFinite { allY += [p.y - e, p.y + e] }
        }
        let xAxis: (low: Double, high: Double, ticks: [Double], step: Double)
        if let categories = xCategories {
            let xs = categories.map(\.x)
            xAxis = ((xs.min() ?? 0) - 0.5, (xs.max() ?? 1) + 0.5, xs, 1)
        } else {
            xAxis = LineChart.axis(allX)
        }
        let yAxis = LineChart.axis(allY, padFraction: 0.04)
        func px(_ x: Double) -> Double { left + (x - xAxis.low) / (xAxis.high - xAxis.low) * plotW }
        func py(_ y: Double) -> Double { top + plotH - (y - yAxis.low) / (yAxis.high - yAxis.low) * plotH }
        let f = LineChart.f

        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(title.htmlEscaped)\">\n"
        out += "<title>\(title.htmlEscaped)</title>\n"
        out += "<rect x=\"0\" y=\"0\" width=\"\(Int(width))\" height=\"\(Int(height))\" fill=\"#ffffff\"/>\n"
        out += "<text x=\"\(f(left))\" y=\"20\" class=\"chart-title\">\(title.htmlEscaped)</text>\n"

        // Grid and ticks.
        out += "<g class=\"grid\">\n"
        for t in yAxis.ticks {
            out += "<line x1=\"\(f(left))\" y1=\"\(f(py(t)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(py(t)))\"/>\n"
        }
        for t in xAxis.ticks where xCategories == nil {
            out += "<line x1=\"\(f(px(t)))\" y1=\"\(f(top))\" x2=\"\(f(px(t)))\" y2=\"\(f(top + plotH))\"/>\n"
        }
        out += "</g>\n<g class=\"axis\">\n"
        out += "<line x1=\"\(f(left))\" y1=\"\(f(top + plotH))\" x2=\"\(f(left + plotW))\" y2=\"\(f(top + plotH))\"/>\n"
        out += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotH))\"/>\n"
        for t in yAxis.ticks {
            out += "<line x1=\"\(f(left - 4))\" y1=\"\(f(py(t)))\" x2=\"\(f(left))\" y2=\"\(f(py(t)))\"/>\n"
            out += "<text x=\"\(f(left - 7))\" y=\"\(f(py(t) + 4))\" text-anchor=\"end\">\(LineChart.tickLabel(t, step: yAxis.step))</text>\n"
        }
        let xTicks: [(Double, String)] = xCategories.map { $0.map { ($0.x, $0.label) } }
            ?? xAxis.ticks.map { ($0, LineChart.tickLabel($0, step: xAxis.step)) }
        for (t, label) in xTicks {
            out += "<line x1=\"\(f(px(t)))\" y1=\"\(f(top + plotH))\" x2=\"\(f(px(t)))\" y2=\"\(f(top + plotH + 4))\"/>\n"
            out += "<text x=\"\(f(px(t)))\" y=\"\(f(top + plotH + 17))\" text-anchor=\"middle\">\(label.htmlEscaped)</text>\n"
        }
        out += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 10))\" text-anchor=\"middle\" class=\"axis-title\">\(xLabel.htmlEscaped)</text>\n"
        out += "<text transform=\"translate(16 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\" class=\"axis-title\">\(yLabel.htmlEscaped)</text>\n"
        out += "</g>\n"

        // Data.
        out += "<g class=\"data\">\n"
        for s in series {
            var d = ""
            var pen = false
            for p in s.points {
                guard p.x.isFinite, p.y.isFinite else { pen = false; continue }
                d += (pen ? " L" : (d.isEmpty ? "M" : " M")) + "\(f(px(p.x))) \(f(py(p.y)))"
                pen = true
            }
            if !d.isEmpty {
                let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
                out += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash)><title>\(s.label.htmlEscaped)</title></path>\n"
            }
            if let errors = s.errors {
                for (p, e) in zip(s.points, errors) where e.isFinite && p.y.isFinite {
                    let x = f(px(p.x))
                    out += "<line x1=\"\(x)\" y1=\"\(f(py(p.y - e)))\" x2=\"\(x)\" y2=\"\(f(py(p.y + e)))\" stroke=\"\(s.color)\" stroke-width=\"1.5\"/>\n"
                }
            }
            if s.dots {
                for p in s.points where p.y.isFinite {
                    out += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3.5\" fill=\"\(s.color)\"><title>\(s.label.htmlEscaped): \(String(format: "%.2f", p.y))</title></circle>\n"
                }
            }
        }
        for m in markers where m.y.isFinite {
            let x = px(m.x), y = py(m.y)
            out += "<path d=\"M\(f(x)) \(f(y + 1)) L\(f(x - 6)) \(f(y - 10)) L\(f(x + 6)) \(f(y - 10)) Z\" fill=\"\(m.color)\" stroke=\"#ffffff\" stroke-width=\"1\"><title>\(m.label.htmlEscaped)</title></path>\n"
        }
        for r in references where r.y.isFinite {
            let y = f(py(r.y))
            out += "<line x1=\"\(f(left))\" y1=\"\(y)\" x2=\"\(f(left + plotW))\" y2=\"\(y)\" stroke=\"#333333\" stroke-width=\"1.2\" stroke-dasharray=\"2 3\"><title>\(r.label.htmlEscaped): \(String(format: "%.2f", r.y))</title></line>\n"
            out += "<text x=\"\(f(left + plotW - 4))\" y=\"\(f(py(r.y) - 4))\" text-anchor=\"end\" class=\"reference\">\(r.label.htmlEscaped)</text>\n"
        }
        out += "</g>\n"

        // Legend.
        out += "<g class=\"legend\">\n"
        let lx = left + plotW + 14
        for (i, entry) in legend.enumerated() {
            let y = top + 8 + Double(i) * 18
            switch entry.symbol {
            case let .line(dashed):
                out += "<line x1=\"\(f(lx))\" y1=\"\(f(y))\" x2=\"\(f(lx + 24))\" y2=\"\(f(y))\" stroke=\"\(entry.color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            case .lineWithDot:
                out += "<line x1=\"\(f(lx))\" y1=\"\(f(y))\" x2=\"\(f(lx + 24))\" y2=\"\(f(y))\" stroke=\"\(entry.color)\" stroke-width=\"2\"/>\n"
                out += "<circle cx=\"\(f(lx + 12))\" cy=\"\(f(y))\" r=\"3.5\" fill=\"\(entry.color)\"/>\n"
            case .triangle:
                out += "<path d=\"M\(f(lx + 12)) \(f(y + 5)) L\(f(lx + 6)) \(f(y - 6)) L\(f(lx + 18)) \(f(y - 6)) Z\" fill=\"\(entry.color)\"/>\n"
            }
            out += "<text x=\"\(f(lx + 30))\" y=\"\(f(y + 4))\">\(entry.label.htmlEscaped)</text>\n"
        }
        out += "</g>\n</svg>"
        return out
    }
}
