package org.egoedge.demo.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

class StreamBufferTest {
    private fun e(v: Float) = floatArrayOf(v, -v)

    @Test
    fun fillsFromTheEndThenSlidesOldestFirst() {
        val b = StreamBuffer(3, 2)
        assertArrayEquals(floatArrayOf(0f, 0f, 0f), b.valid(), 0f)
        b.push(e(1f))
        assertArrayEquals(floatArrayOf(0f, 0f, 1f), b.valid(), 0f)
        // Empty slots come first as zeros: the newest frame always sits in the last slot.
        assertArrayEquals(floatArrayOf(0f, 0f, 0f, 0f, 1f, -1f), b.window(), 0f)
        b.push(e(2f))
        b.push(e(3f))
        assertTrue(b.isFull)
        assertArrayEquals(floatArrayOf(1f, -1f, 2f, -2f, 3f, -3f), b.window(), 0f)
        b.push(e(4f)) // the ring wraps: 1 drops out, order stays oldest first
        assertArrayEquals(floatArrayOf(2f, -2f, 3f, -3f, 4f, -4f), b.window(), 0f)
        assertArrayEquals(floatArrayOf(1f, 1f, 1f), b.valid(), 0f)
        b.clear()
        assertFalse(b.isFull)
        assertEquals(0, b.count)
    }

    @Test(expected = IllegalArgumentException::class)
    fun refusesAnEmbeddingOfTheWrongWidth() {
        StreamBuffer(2, 4).push(floatArrayOf(1f, 2f))
    }

    @Test
    fun classifierFeedsEachFrameOnceAndTheHeadTheWholeWindow() {
        var encoded = 0
        // encoder: the frame's sum as a 1-wide embedding; head: the window's values and mask, flattened
        val c = StreamingClassifier(
            encoder = { f -> encoded++; floatArrayOf(f.sum()) },
            head = { w, v -> w + v },
            window = 2, dim = 1,
        )
        assertArrayEquals(floatArrayOf(0f, 3f, 0f, 1f), c.step(floatArrayOf(1f, 2f)), 0f)
        assertArrayEquals(floatArrayOf(3f, 7f, 1f, 1f), c.step(floatArrayOf(3f, 4f)), 0f)
        assertEquals(2, encoded)
        // A clip starts from an empty window: its last step sees exactly its own frames.
        assertArrayEquals(floatArrayOf(1f, 5f, 1f, 1f), c.clip(floatArrayOf(0f, 1f, 2f, 3f), frames = 2), 0f)
        assertEquals(4, encoded)
    }

    @Test
    fun aDroppedFrameHoldsTheLastEmbeddingInItsSlot() {
        // encoder: the frame's first value as a 1-wide embedding; head: the window, flattened
        val c = StreamingClassifier({ f -> floatArrayOf(f[0]) }, { w, _ -> w }, 4, 1)
        c.stepAt(floatArrayOf(1f), 0, 100)
        c.stepAt(floatArrayOf(2f), 100, 100)
        // 300 ms later: the frame of 200 was dropped while the model ran; its slot holds 2.
        val w = c.stepAt(floatArrayOf(3f), 300, 100)
        assertArrayEquals(floatArrayOf(1f, 2f, 2f, 3f), w, 0f)
        c.clip(floatArrayOf(5f, 6f), 2) // a clip starts from an empty window and forgets the time
        assertArrayEquals(floatArrayOf(0f, 5f, 6f, 7f), c.stepAt(floatArrayOf(7f), 10_000, 100), 0f)
    }
}
