package org.egoedge.demo.core

/**
 * The last `frames` camera frames, one taken every `intervalMs`: a sliding clip for the model.
 *
 * Camera frames arrive at the sensor's rate; keeping one per interval gives the model clips that
 * span about as long as the training clips did, whatever the camera's frame rate. The window is
 * built by time: when frames were dropped (the analysis was busy, the camera stalled), each slot
 * their intervals would have filled holds the last frame taken before them, so the clip still spans
 * `frames` intervals instead of squeezing a longer stretch of time into them.
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

    /** Adds `frame` if the interval has passed (after holding the last frame in any slots missed); returns whether it was taken. */
    @Synchronized
    fun offer(frame: Frame, timestampMs: Long): Boolean {
        if (!wants(timestampMs)) return false
        val held = buffer.lastOrNull()
        if (held != null) repeat(missedSlots(lastTakenMs, timestampMs, intervalMs, frames - 1)) { add(held) }
        add(frame)
        lastTakenMs = timestampMs
        return true
    }

    private fun add(frame: Frame) {
        if (buffer.size == frames) buffer.removeFirst()
        buffer.addLast(frame)
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

/** How many whole intervals passed between two taken frames beyond the one the second fills, at most `cap`. */
fun missedSlots(lastMs: Long, nowMs: Long, intervalMs: Long, cap: Int): Int {
    if (lastMs == Long.MIN_VALUE || intervalMs <= 0 || nowMs <= lastMs) return 0
    return ((nowMs - lastMs) / intervalMs - 1).coerceIn(0L, cap.toLong()).toInt()
}
