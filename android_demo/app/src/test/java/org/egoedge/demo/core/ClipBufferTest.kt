package org.egoedge.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertSame
import org.junit.Assert.assertTrue
import org.junit.Test

class ClipBufferTest {
    private fun frame(v: Int) = Frame(1, 1, byteArrayOf(v.toByte(), 0, 0))

    @Test
    fun takesOneFramePerInterval() {
        val b = ClipBuffer(3, 100)
        val f = (0..4).map(::frame)
        assertTrue(b.offer(f[0], 0))
        assertFalse(b.offer(f[1], 50)) // too soon
        assertTrue(b.offer(f[2], 110))
        assertTrue(b.offer(f[3], 230))
        assertTrue(b.isFull)
        assertEquals(listOf(f[0], f[2], f[3]), b.snapshot())
    }

    @Test
    fun droppedFramesKeepTheWindowSpacedInTime() {
        // Frames at 0 and 100, then nothing until 400 (two intervals missed: the analysis was busy).
        val b = ClipBuffer(4, 100)
        val f = (0..2).map(::frame)
        b.offer(f[0], 0)
        b.offer(f[1], 100)
        b.offer(f[2], 400)
        val clip = b.snapshot()
        // The slots of 200 and 300 hold the frame of 100: the clip spans 4 intervals, as in training.
        assertEquals(4, clip.size)
        assertSame(f[1], clip[0])
        assertSame(f[1], clip[1])
        assertSame(f[1], clip[2])
        assertSame(f[2], clip[3])
    }

    @Test
    fun aLongStallFillsAtMostTheWindow() {
        val b = ClipBuffer(3, 100)
        val f = (0..1).map(::frame)
        b.offer(f[0], 0)
        b.offer(f[1], 100_000)
        assertEquals(listOf(f[0], f[0], f[1]), b.snapshot())
        assertEquals(0, missedSlots(Long.MIN_VALUE, 500, 100, 7))
        assertEquals(2, missedSlots(0, 399, 100, 7)) // 3 whole intervals: the frame fills the last
    }
}
