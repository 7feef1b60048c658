package org.egoedge.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

class ResultTest {
    @Test
    fun namesFollowEgoedgeArtifactNaming() {
        assertEquals("executorch", BenchResult.formatOf("student_executorch_int8.pte"))
        assertEquals("tflite", BenchResult.formatOf("student_tflite_w8.TFLITE"))
        assertEquals(null, BenchResult.formatOf("student_onnx_fp32.onnx"))
        assertEquals("int8", BenchResult.precisionOf("student_cbkd_tflite_int8.tflite"))
        assertEquals("unknown", BenchResult.precisionOf("mymodel.pte"))
    }

    @Test
    fun resultJsonCarriesTheReportFields() {
        val json = Json.write(BenchResult.ok("m_tflite_int8", "tflite", "int8", "Pixel \"8\"", "litert 2.3.0", 4, 1000,
            12.5, doubleArrayOf(1.0, 2.0), 1, null, listOf(floatArrayOf(0.5f, Float.NaN))))
        for (part in listOf("\"protocol\":1", "\"status\":\"ok\"", "\"device\":\"Pixel \\\"8\\\"\"", "\"peak_rss_mb\":null",
            "\"latency_samples_ms\":[1.0,2.0]", "\"logits\":[[0.5,null]]", "\"iterations\":2")) {
            assertTrue("$part in $json", part in json)
        }
    }

    @Test
    fun inputsSplitIntoClips() {
        val shape = Inputs.parseShape("2,1,3,1,1")
        val bytes = java.nio.ByteBuffer.allocate(24).order(java.nio.ByteOrder.LITTLE_ENDIAN)
        for (i in 0 until 6) bytes.putFloat(i.toFloat())
        val clips = Inputs.clips(bytes.array(), shape)
        assertEquals(listOf(3f, 4f, 5f), clips[1].toList())
    }

    @Test
    fun clipBufferKeepsTheLastFramesAtTheInterval() {
        val buffer = ClipBuffer(2, 100)
        val f = { v: Int -> Frame(1, 1, byteArrayOf(v.toByte(), 0, 0)) }
        assertTrue(buffer.offer(f(1), 0))
        assertEquals(false, buffer.offer(f(2), 50))
        assertTrue(buffer.offer(f(3), 100))
        assertTrue(buffer.offer(f(4), 200))
        assertEquals(listOf(3, 4), buffer.snapshot().map { it.rgb[0].toInt() })
    }

    @Test
    fun topKRanksByLogitAndKeepsClassOrderOnTies() {
        val ranked = TopK.of(floatArrayOf(1f, 3f, 3f, -2f), listOf("a", "b", "c", "d"), 3)
        assertEquals(listOf("b", "c", "a"), ranked.map { it.label })
        assertEquals(1.0f, TopK.softmax(floatArrayOf(1000f, 1000f)).sum(), 1e-6f)
    }
}
