package org.egoedge.demo.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test

class PreprocessTest {
    private fun spec(h: Int, w: Int, frames: Int = 1, layout: String = "NTCHW") =
        PreprocessSpec(h, w, floatArrayOf(0.5f, 0.5f, 0.5f), floatArrayOf(0.25f, 0.5f, 1f), frames, layout)

    @Test
    fun cropKeepsTheCentreAtTheModelsAspect() {
        assertArrayEquals(intArrayOf(0, 80, 480, 480), Preprocess.centerCropBox(480, 640, 256, 256))
        assertArrayEquals(intArrayOf(80, 0, 480, 480), Preprocess.centerCropBox(640, 480, 256, 256))
        assertArrayEquals(intArrayOf(0, 0, 32, 32), Preprocess.centerCropBox(32, 32, 32, 32))
    }

    @Test
    fun sameSizeResizeIsTheIdentity() {
        val frame = Frame(3, 2, ByteArray(18) { (it * 13).toByte() })
        val out = Preprocess.resizeBilinear(frame, intArrayOf(0, 0, 2, 3), 2, 3)
        assertArrayEquals(FloatArray(18) { ((it * 13) and 0xFF).toFloat() }, out, 0f)
    }

    @Test
    fun downscaleByTwoAveragesPixelPairs() {
        // 1x4 grey ramp 0, 100, 200, 250 -> half-pixel centres at 0.5 and 2.5 -> 50 and 225.
        val rgb = byteArrayOf(0, 0, 0, 100, 100, 100, 200.toByte(), 200.toByte(), 200.toByte(), 250.toByte(), 250.toByte(), 250.toByte())
        val out = Preprocess.resizeBilinear(Frame(4, 1, rgb), intArrayOf(0, 0, 1, 4), 1, 2)
        assertArrayEquals(floatArrayOf(50f, 50f, 50f, 225f, 225f, 225f), out, 1e-4f)
    }

    @Test
    fun normalisesPerChannelIntoTheLayout() {
        val white = Frame(1, 1, byteArrayOf(-1, -1, -1)) // 255, 255, 255
        val x = Preprocess.clip(listOf(white, white), spec(1, 1, frames = 2))
        assertArrayEquals(floatArrayOf(2f, 1f, 0.5f, 2f, 1f, 0.5f), x, 1e-6f)
        val nthwc = Preprocess.clip(listOf(white), spec(1, 1, layout = "NTHWC"))
        assertArrayEquals(floatArrayOf(2f, 1f, 0.5f), nthwc, 1e-6f)
        assertEquals(listOf(1L, 2L, 3L, 1L, 1L), spec(1, 1, frames = 2).shape.toList())
    }

    @Test(expected = IllegalArgumentException::class)
    fun wrongFrameCountIsRefused() {
        Preprocess.clip(listOf(Frame(1, 1, ByteArray(3))), spec(1, 1, frames = 2))
    }

    @Test
    fun argbPixelsBecomeRgbBytes() {
        val f = Frame.fromArgb(intArrayOf(0xFF102030.toInt()), 1, 1)
        assertArrayEquals(byteArrayOf(0x10, 0x20, 0x30), f.rgb)
    }

    @Test
    fun aFrameIsItsSliceOfTheClip() {
        for (layout in PreprocessSpec.LAYOUTS) {
            val frames = List(3) { t -> Frame(5, 4, ByteArray(60) { (it * 7 + t * 31).toByte() }) }
            val s = spec(4, 4, frames = 3, layout = layout)
            val clip = Preprocess.clip(frames, s)
            val per = clip.size / 3
            for ((t, f) in frames.withIndex()) {
                assertArrayEquals(clip.copyOfRange(t * per, (t + 1) * per), Preprocess.frame(f, s), 0f)
            }
        }
    }
}
