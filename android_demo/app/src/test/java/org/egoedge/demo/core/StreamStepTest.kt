package org.egoedge.demo.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class StreamStepTest {
    private val window = 3
    private val dim = 2

    // encoder: the frame's sum and first value; head: the window and mask, flattened (so every value is checked)
    private fun encode(f: FloatArray) = floatArrayOf(f.sum(), f[0])
    private fun head(w: FloatArray, v: FloatArray) = w + v

    /**
     * The same model as one fused step, the way egoedge exports it (trainer/models/streaming.py StreamStep):
     * drop the oldest slot, append the new embedding, mark its slot valid. Its tensors in an order of its own
     * (valid, frame, window in; next valid, logits, next window out), found by name as the app does.
     */
    private val layout = StepLayout.of(
        listOf("valid", "frame", "embeddings"), listOf("next_valid", "logits", "next_embeddings"),
        "frame", "embeddings", "valid", "next_embeddings", "next_valid", StreamLayout.OLDEST_FIRST,
    )

    private fun step(inputs: List<FloatArray>): List<FloatArray> {
        val (valid, frame, embeddings) = inputs
        val next = embeddings.copyOfRange(dim, window * dim) + encode(frame)
        val nextValid = valid.copyOfRange(1, window) + floatArrayOf(1f)
        return listOf(nextValid, head(next, nextValid), next)
    }

    @Test
    fun aStepGivesWhatThePairGivesFrameByFrame() {
        val pair = StreamingClassifier(::encode, ::head, window, dim)
        val fused = StepClassifier(::step, layout, window, dim)
        for (t in 0 until 5) {
            val frame = floatArrayOf(t.toFloat(), 2f * t + 1)
            assertArrayEquals("frame $t", pair.step(frame), fused.step(frame), 0f)
            assertEquals(pair.count, fused.count)
        }
        assertTrue(fused.isFull)
    }

    @Test
    fun droppedFramesAndClipsMatchThePair() {
        val pair = StreamingClassifier(::encode, ::head, window, dim)
        val fused = StepClassifier(::step, layout, window, dim)
        // 100 ms apart, with the frames of 200 and 300 dropped: both keep the last embedding in their slots.
        for ((i, ms) in listOf(0L, 100L, 400L, 500L).withIndex()) {
            val frame = floatArrayOf(i + 1f, -i.toFloat())
            assertArrayEquals("at $ms ms", pair.stepAt(frame, ms, 100), fused.stepAt(frame, ms, 100), 0f)
        }
        val clip = floatArrayOf(1f, 2f, 3f, 4f) // 2 frames of 2 values, from an empty window
        assertArrayEquals(pair.clip(clip, 2), fused.clip(clip, 2), 0f)
        assertFalse(fused.isFull)
        assertEquals(2, fused.count)
    }

    @Test
    fun aStepWithOtherTensorsIsRefusedByName() {
        for ((inputs, outputs, message) in listOf(
            Triple(listOf("frame", "window", "valid"), listOf("logits", "next_embeddings", "next_valid"), "takes frame, window, valid"),
            Triple(listOf("frame", "embeddings", "valid"), listOf("logits", "next_valid"), "gives logits"),
            Triple(listOf("frame", "embeddings", "valid"), listOf("logits", "state", "next_valid"), "no output 'next_embeddings'"),
        )) {
            try {
                StepLayout.of(inputs, outputs, "frame", "embeddings", "valid", "next_embeddings", "next_valid", StreamLayout.OLDEST_FIRST)
                fail("accepted $inputs -> $outputs")
            } catch (e: IllegalArgumentException) {
                assertTrue(e.message, e.message!!.contains(message))
            }
        }
    }

    @Test(expected = IllegalArgumentException::class)
    fun aStepThatGivesAWindowOfAnotherSizeIsRefused() {
        StepClassifier({ listOf(FloatArray(window), FloatArray(4), FloatArray(window * dim + 1)) }, layout, window, dim)
            .step(floatArrayOf(1f, 2f))
    }
}
