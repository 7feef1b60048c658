package org.egoedge.demo.core

import org.junit.Assert.assertEquals
import org.junit.Test

class LatencyStatsTest {
    @Test
    fun matchesNumpyDefinitions() {
        // numpy: mean 4.0, median 4.0, percentile 90 -> 4.8, 99 -> 4.98, std (population) 0.8165
        val s = LatencyStats.of(doubleArrayOf(5.0, 3.0, 4.0), warmup = 2)
        assertEquals(4.0, s.mean, 1e-12)
        assertEquals(4.0, s.median, 1e-12)
        assertEquals(4.8, s.p90, 1e-12)
        assertEquals(4.98, s.p99, 1e-12)
        assertEquals(0.816496580927726, s.std, 1e-12)
        assertEquals(3, s.iterations)
        assertEquals(2, s.warmup)
    }

    @Test
    fun evenCountMedianIsTheMidpoint() {
        assertEquals(2.5, LatencyStats.of(doubleArrayOf(4.0, 1.0, 3.0, 2.0), 0).median, 1e-12)
    }
}
