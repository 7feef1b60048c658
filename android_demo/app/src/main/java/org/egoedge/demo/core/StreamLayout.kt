package org.egoedge.demo.core

/**
 * How a temporal head takes the ring buffer, as the manifest's `streaming` block says: which of the
 * head's inputs is the window of embeddings (`buffer_input`), which the 0/1 mask of filled slots
 * (`valid_input`), and the order of the slots (`order`). The app feeds the head by these names, not
 * by position, and refuses an order it does not build.
 */
class StreamLayout private constructor(private val bufferFirst: Boolean) {
    /** The head's two inputs in its own order. */
    fun <T> arrange(window: T, valid: T): List<T> = if (bufferFirst) listOf(window, valid) else listOf(valid, window)

    companion object {
        /** [StreamBuffer] gives the window oldest slot first, empty slots first (edge/streaming.py's RingBuffer). */
        const val OLDEST_FIRST = "oldest_first"

        fun of(headInputs: List<String>, bufferInput: String, validInput: String, order: String): StreamLayout {
            require(order == OLDEST_FIRST) { "the manifest's streaming order '$order' is not one this app builds ($OLDEST_FIRST)" }
            require(headInputs.size == 2) { "a temporal head takes 2 inputs ($bufferInput, $validInput), this one ${headInputs.size}: $headInputs" }
            val buffer = headInputs.indexOf(bufferInput)
            val valid = headInputs.indexOf(validInput)
            require(buffer >= 0) { "the temporal head has no input '$bufferInput' (it takes ${headInputs.joinToString()})" }
            require(valid >= 0 && valid != buffer) { "the temporal head has no input '$validInput' (it takes ${headInputs.joinToString()})" }
            return StreamLayout(buffer == 0)
        }
    }
}
