package org.egoedge.demo.core

import kotlin.math.ceil
import kotlin.math.floor
import kotlin.math.sqrt

/** The host report's `latency_ms` block, with the same definitions as `bench/measure.py` (numpy). */
data class LatencyStats(
    val mean: Double,
    val median: Double,
    val p90: Double,
    val p99: Double,
    val std: Double,
    val iterations: Int,
    val warmup: Int,
) {
    fun toMap(): Map<String, Any?> = linkedMapOf(
        "mean" to mean, "median" to median, "p90" to p90, "p99" to p99, "std" to std,
        "iterations" to iterations, "warmup" to warmup,
    )

    companion object {
        /** Statistics of the timed runs (milliseconds); `warmup` is only recorded. */
        fun of(samplesMs: DoubleArray, warmup: Int): LatencyStats {
            require(samplesMs.isNotEmpty()) { "no timed runs" }
            val sorted = samplesMs.sortedArray()
            val mean = samplesMs.average()
            val variance = samplesMs.sumOf { (it - mean) * (it - mean) } / samplesMs.size // population, as numpy's std
            return LatencyStats(mean, percentile(sorted, 50.0), percentile(sorted, 90.0), percentile(sorted, 99.0),
                sqrt(variance), samplesMs.size, warmup)
        }

        /** numpy's default ("linear") percentile of already sorted values. */
        fun percentile(sorted: DoubleArray, p: Double): Double {
            val rank = p / 100.0 * (sorted.size - 1)
            val lo = floor(rank).toInt()
            val hi = ceil(rank).toInt()
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo)
        }
    }
}
