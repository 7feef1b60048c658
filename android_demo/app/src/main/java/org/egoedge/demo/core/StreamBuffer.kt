package org.egoedge.demo.core

/**
 * The last `window` frame embeddings of a streaming pair, kept as a ring: pushing costs one copy of
 * one embedding, never a shift of the whole window.
 *
 * [window] and [valid] give the temporal head its two inputs exactly as egoedge's reference
 * (`edge/streaming.py` RingBuffer) does: the embeddings oldest first, empty slots first as zeros,
 * and a 0/1 mask of the slots that hold a frame. Change one, change both.
 */
class StreamBuffer(val window: Int, val dim: Int) {
    private val slots = FloatArray(window * dim)
    private var next = 0
    var count = 0
        private set

    init {
        require(window > 0 && dim > 0) { "a stream buffer needs window > 0 and dim > 0, got $window x $dim" }
    }

    val isFull: Boolean get() = count == window

    /** Pushes the newest embedding again: the slot of a frame that was dropped holds the one before it. */
    fun repeatLast() {
        if (count == 0) return
        val newest = (next - 1 + window) % window
        slots.copyInto(slots, next * dim, newest * dim, (newest + 1) * dim)
        next = (next + 1) % window
        if (count < window) count++
    }

    fun push(embedding: FloatArray) {
        require(embedding.size == dim) { "embedding of width ${embedding.size} pushed into a buffer of width $dim" }
        embedding.copyInto(slots, next * dim)
        next = (next + 1) % window
        if (count < window) count++
    }

    /** `(1, window, dim)` row-major, oldest slot first. */
    fun window(): FloatArray {
        val out = FloatArray(window * dim)
        for (i in 0 until window) {
            val slot = (next + i) % window
            slots.copyInto(out, i * dim, slot * dim, (slot + 1) * dim)
        }
        return out
    }

    /** `(1, window)`: 1 where a slot holds a frame (the newest `count` slots, at the end), else 0. */
    fun valid(): FloatArray = FloatArray(window) { if (it >= window - count) 1f else 0f }

    fun clear() {
        slots.fill(0f)
        next = 0
        count = 0
    }
}

/**
 * A streaming pair run the way the camera path and the benchmark activity run it: one preprocessed
 * frame in, the encoder's embedding into the ring, the head over the window, logits out.
 *
 * The two models are plain functions so that this runs (and is tested) on the JVM without a runtime.
 */
class StreamingClassifier(
    private val encoder: (FloatArray) -> FloatArray,
    private val head: (window: FloatArray, valid: FloatArray) -> FloatArray,
    window: Int,
    dim: Int,
) : FrameClassifier(window) {
    val buffer = StreamBuffer(window, dim)

    override val count: Int get() = buffer.count

    override fun step(frame: FloatArray): FloatArray {
        buffer.push(encoder(frame))
        return head(buffer.window(), buffer.valid())
    }

    override fun repeatLast() = buffer.repeatLast()

    override fun reset() = buffer.clear()
}
