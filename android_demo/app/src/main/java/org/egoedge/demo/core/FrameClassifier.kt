package org.egoedge.demo.core

/**
 * Either streaming form (a pair with the app's ring buffer, or a fused step carrying its own window):
 * one preprocessed frame in, logits over the last [window] frames out. Dropped camera frames and
 * whole clips are handled here once, for both forms.
 */
abstract class FrameClassifier(val window: Int) {
    private var lastMs = Long.MIN_VALUE

    /** Frames in the window so far (at most [window]). */
    abstract val count: Int

    val isFull: Boolean get() = count == window

    /** One new frame -> logits over the window so far (the clip model's logits once [isFull]). */
    abstract fun step(frame: FloatArray): FloatArray

    /** The newest frame's slot again: the window moves on by one frame without a model call. */
    protected abstract fun repeatLast()

    /** An empty window. */
    protected abstract fun reset()

    /**
     * [step] for a camera frame taken at `timestampMs`, one expected every `intervalMs`: the slots of
     * frames dropped since the last one (the model was still busy) hold the last embedding, so the
     * window spans the time the model was trained on, as [ClipBuffer] does for clips.
     */
    fun stepAt(frame: FloatArray, timestampMs: Long, intervalMs: Long): FloatArray {
        if (count > 0) repeat(missedSlots(lastMs, timestampMs, intervalMs, window - 1)) { repeatLast() }
        lastMs = timestampMs
        return step(frame)
    }

    /** A whole preprocessed clip (`frames` frames of `frameSize` floats, NTCHW) fed from an empty window. */
    fun clip(clip: FloatArray, frames: Int): FloatArray {
        require(frames > 0 && clip.size % frames == 0) { "a clip of ${clip.size} floats does not split into $frames frames" }
        val frameSize = clip.size / frames
        reset()
        lastMs = Long.MIN_VALUE
        var logits = FloatArray(0)
        for (t in 0 until frames) logits = step(clip.copyOfRange(t * frameSize, (t + 1) * frameSize))
        return logits
    }
}
