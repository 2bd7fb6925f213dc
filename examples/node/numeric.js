// Small numeric helpers that reproduce numpy's float64 results bit for bit where it matters:
// numpy's pairwise summation (np.sum / np.mean along a contiguous axis), np.rint (round half to
// even) and np.round(x, decimals), and np.median.

/** numpy's pairwise sum of values[start, start + n) (numpy/_core/src/umath/loops_utils.h.src). */
export function pairwiseSum(values, start = 0, n = values.length - start) {
  if (n < 8) {
    let res = 0.0;
    for (let i = 0; i < n; i++) res += values[start + i];
    return res;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = values[start + j];
    let i = 8;
    const whole = n - (n % 8);
    for (; i < whole; i += 8) {
      for (let j = 0; j < 8; j++) r[j] += values[start + i + j];
    }
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += values[start + i];
    return res;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return pairwiseSum(values, start, half) + pairwiseSum(values, start + half, n - half);
}

/** np.mean of a float64 row. */
export function mean(values) {
  return pairwiseSum(values) / values.length;
}

/** np.rint: round to the nearest integer, halves to even. */
export function rint(y) {
  if (!Number.isFinite(y)) return y;
  const r = Math.round(y); // halves go toward +infinity
  return r - y === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.round(x, decimals) for decimals >= 0: rint(x * 10^d) / 10^d, as numpy computes it. */
export function roundTo(x, decimals) {
  const f = 10 ** decimals;
  return rint(x * f) / f;
}

/**
 * np.median of one row. NaN anywhere gives NaN. With float32 = true the mean of the two middle
 * values (even length) is computed in float32, as np.median does for a float32 array.
 */
export function median(values, float32 = false) {
  const n = values.length;
  if (n === 0) return NaN;
  const sorted = Float64Array.from(values);
  for (const v of sorted) if (Number.isNaN(v)) return NaN;
  sorted.sort();
  const mid = n >> 1;
  if (n % 2 === 1) return sorted[mid];
  if (float32) return Math.fround(Math.fround(sorted[mid - 1] + sorted[mid]) / 2);
  return (sorted[mid - 1] + sorted[mid]) / 2;
}
