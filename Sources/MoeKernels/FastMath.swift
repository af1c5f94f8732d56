/// A branch-free exp the compiler can vectorise (libm's expf is a call it cannot),
/// accurate to a few ulp — tested against libm in KernelTests. It carries the router's
/// log-sum-exp; the heavy element-wise passes are the C kernels of CKernels.
public enum FastMath {
    /// e^x: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-7 Taylor polynomial
    /// (truncation < 2e-9 relative), 2^n assembled in the exponent bits. Inputs are clamped
    /// to [−87, 88] so the result stays a normal float (e^−87 ≈ 1.6e−38, e^88 ≈ 1.7e38).
    @inlinable @inline(__always)
    public static func exp(_ x: Float) -> Float {
        let c = min(max(x, -87), 88)
        // Round to nearest by adding 1.5·2²³: the integer lands in the low mantissa bits, so
        // no float→int conversion is needed (that would trap on NaN and block vectorising).
        let shifted = c * 1.442_695_04 + 12_582_912
        let n = shifted - 12_582_912
        let ni = Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000
        // ln2 split in two so n·ln2_hi is exact in fp32 (Cody–Waite).
        let r = (c - n * 0.693_145_751_953_125) - n * 1.428_606_765_330_187_045e-06
        var p: Float = 1.0 / 5040
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let scale = Float(bitPattern: UInt32(bitPattern: (ni &+ 127) &<< 23))
        return p * scale
    }
}
