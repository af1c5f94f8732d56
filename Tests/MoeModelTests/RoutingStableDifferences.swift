import MoeModel
import MoeTestSupport

/// Analytic and central-difference gradients (h = 1e-2) at `picks` of the parameter run
/// that starts at `offset`. A pick whose ±h changes any token's routing is skipped: the
/// loss is not differentiable across a routing change, so its difference means nothing.
func routingStableGradients(_ model: Transformer, offset: Int, picks: [Int], analyticAt: (Int) -> Double,
                            baseSignature: [Int32], loss: () -> Double) -> (analytic: [Double], numeric: [Double]) {
    var analytic: [Double] = [], numeric: [Double] = []
    let p = model.params.base + offset
    for i in picks {
        let old = p[i]
        p[i] = old + 1e-2; _ = loss(); let up = model.routingSignature()
        p[i] = old - 1e-2; _ = loss(); let down = model.routingSignature()
        p[i] = old
        if up != baseSignature || down != baseSignature { continue }
        numeric.append(TestSupport.centralDifference(p, i, h: 1e-2, loss))
        analytic.append(analyticAt(offset + i))
    }
    return (analytic, numeric)
}
