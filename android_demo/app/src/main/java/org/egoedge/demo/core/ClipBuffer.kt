package org.egoedge.demo.core

/**
 * The last `frames` camera frames, one taken every `intervalMs`: a sliding clip for the model.
 *
 * Camera frames arrive at the sensor's rate; keeping one per interval gives the model clips that
 * span about as long as the training clips did, whatever the camera's frame rate.
 */
class ClipBuffer(private val frames: Int, private val intervalMs: Long) {
    private val buffer = ArrayDeque<Frame>(frames)
    private var lastTakenMs = Long.MIN_VALUE

    init {
        require(frames > 0) { "a clip needs at least one frame" }
        require(intervalMs >= 0) { "interval must be >= 0" }
    }

    /** Whether a frame arriving at `timestampMs` should be converted and offered (saves the conversion). */
    fun wants(timestampMs: Long): Boolean = lastTakenMs == Long.MIN_VALUE || timestampMs - lastTakenMs >= intervalMs

    /** Adds `frame` if the interval has passed; returns whether it was taken. */
    @Synchronized
    fun offer(frame: Frame, timestampMs: Long): Boolean {
        if (!wants(timestampMs)) return false
        if (buffer.size == frames) buffer.removeFirst()
        buffer.addLast(frame)
        lastTakenMs = timestampMs
        return true
    }

    val isFull: Boolean @Synchronized get() = buffer.size == frames

    /** The buffered frames, oldest first. */
    @Synchronized
    fun snapshot(): List<Frame> = buffer.toList()

    @Synchronized
    fun clear() {
        buffer.clear()
        lastTakenMs = Long.MIN_VALUE
    }
}
