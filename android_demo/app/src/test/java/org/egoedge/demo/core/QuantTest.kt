package org.egoedge.demo.core

import org.junit.Assert.assertArrayEquals
import org.junit.Test

class QuantTest {
    @Test
    fun tiesRoundAwayFromZeroAndClamp() {
        val q = QuantParams(0.5f, -3)
        val x = floatArrayOf(0.25f, -0.25f, 0.75f, 1000f, -1000f, 0f)
        // 0.5 -> 1, -0.5 -> -1, 1.5 -> 2 (half to even would give 0, 0, 2), then + zero point and clamp.
        assertArrayEquals(byteArrayOf(-2, -4, -1, 127, -128, -3), Quant.quantize(x, q))
    }

    @Test
    fun dequantizeInvertsOnTheGrid() {
        val q = QuantParams(0.1f, 5)
        val data = byteArrayOf(-128, 0, 5, 127)
        assertArrayEquals(data, Quant.quantize(Quant.dequantize(data, q), q))
    }
}
