package org.egoedge.demo.core

import kotlin.math.exp

/** One ranked class: its index, its label and its softmax probability. */
data class Ranked(val index: Int, val label: String, val probability: Float)

object TopK {
    /** Softmax of `logits` (max-subtracted, so large logits do not overflow). */
    fun softmax(logits: FloatArray): FloatArray {
        val max = logits.maxOrNull() ?: return FloatArray(0)
        val e = FloatArray(logits.size) { exp((logits[it] - max).toDouble()).toFloat() }
        val sum = e.sum()
        return FloatArray(e.size) { e[it] / sum }
    }

    /** The `k` most likely classes, best first; equal logits keep class order. */
    fun of(logits: FloatArray, labels: List<String>, k: Int = 5): List<Ranked> {
        require(labels.size == logits.size) { "${logits.size} logits but ${labels.size} labels" }
        val p = softmax(logits)
        return logits.indices.sortedWith(compareByDescending<Int> { logits[it] }.thenBy { it })
            .take(k).map { Ranked(it, labels[it], p[it]) }
    }

    /** Largest absolute difference between two logit vectors (the app's own parity check). */
    fun maxAbsDiff(a: FloatArray, b: FloatArray): Float {
        require(a.size == b.size) { "cannot compare ${a.size} with ${b.size} values" }
        return a.indices.maxOfOrNull { kotlin.math.abs(a[it] - b[it]) } ?: 0f
    }
}
