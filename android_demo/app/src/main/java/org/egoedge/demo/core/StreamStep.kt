package org.egoedge.demo.core

/**
 * Where a fused streaming step's tensors are, by the names the manifest's `streaming` block gives
 * (`frame_input`, `buffer_input`, `valid_input`, `next_buffer_output`, `next_valid_output`): the
 * app feeds and reads the step by name, never by position, and refuses an order it does not build.
 */
class StepLayout private constructor(private val inputRoles: IntArray, val logitsAt: Int, val nextBufferAt: Int, val nextValidAt: Int) {
    /** The step's three inputs in its own order. */
    fun <T> arrange(frame: T, buffer: T, valid: T): List<T> {
        val byRole = listOf(frame, buffer, valid)
        return inputRoles.map { byRole[it] }
    }

    companion object {
        fun of(
            inputs: List<String>, outputs: List<String>, frameInput: String, bufferInput: String, validInput: String,
            nextBufferOutput: String, nextValidOutput: String, order: String,
        ): StepLayout {
            require(order == StreamLayout.OLDEST_FIRST) {
                "the manifest's streaming order '$order' is not one this app builds (${StreamLayout.OLDEST_FIRST})"
            }
            val wanted = listOf(frameInput, bufferInput, validInput)
            require(inputs.size == 3 && inputs.toSet() == wanted.toSet()) {
                "a streaming step takes ${wanted.joinToString()}; this one takes ${inputs.joinToString()}"
            }
            require(outputs.size == 3) { "a streaming step gives logits, $nextBufferOutput and $nextValidOutput; this one ${outputs.joinToString()}" }
            val nextBuffer = outputs.indexOf(nextBufferOutput)
            val nextValid = outputs.indexOf(nextValidOutput)
            require(nextBuffer >= 0) { "the streaming step has no output '$nextBufferOutput' (it gives ${outputs.joinToString()})" }
            require(nextValid >= 0 && nextValid != nextBuffer) {
                "the streaming step has no output '$nextValidOutput' (it gives ${outputs.joinToString()})"
            }
            val logits = (0 until 3).first { it != nextBuffer && it != nextValid }
            return StepLayout(IntArray(3) { wanted.indexOf(inputs[it]) }, logits, nextBuffer, nextValid)
        }
    }
}

/**
 * A fused streaming step run the way the camera path and the benchmark activity run it: one call per
 * frame, the window of embeddings (oldest first) and its 0/1 mask fed back from the last call's
 * outputs, starting from zeros -- egoedge's reference `edge/streaming.py` StepRunner. The step is a
 * plain function (inputs in [StepLayout] order -> outputs) so this runs on the JVM without a runtime.
 */
class StepClassifier(
    private val run: (List<FloatArray>) -> List<FloatArray>,
    private val layout: StepLayout,
    window: Int,
    private val dim: Int,
) : FrameClassifier(window) {
    private var embeddings = FloatArray(window * dim)
    private var valid = FloatArray(window)

    init {
        require(window > 0 && dim > 0) { "a streaming step needs window > 0 and dim > 0, got $window x $dim" }
    }

    override val count: Int get() = valid.count { it > 0.5f }

    override fun step(frame: FloatArray): FloatArray {
        val out = run(layout.arrange(frame, embeddings, valid))
        require(out.size == 3 && out[layout.nextBufferAt].size == window * dim && out[layout.nextValidAt].size == window) {
            "the streaming step gave outputs of ${out.map { it.size }} values; expected logits, a $window x $dim window and $window mask values"
        }
        embeddings = out[layout.nextBufferAt]
        valid = out[layout.nextValidAt]
        return out[layout.logitsAt]
    }

    // What the step itself does with a new frame, with the newest embedding as that frame's: the window
    // moves left one slot and the last slot keeps the newest.
    override fun repeatLast() {
        if (count == 0) return
        embeddings.copyInto(embeddings, 0, dim, window * dim)
        valid.copyInto(valid, 0, 1, window)
        valid[window - 1] = 1f
    }

    override fun reset() {
        embeddings = FloatArray(window * dim)
        valid = FloatArray(window)
    }
}
