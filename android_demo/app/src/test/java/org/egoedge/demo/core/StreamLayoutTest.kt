package org.egoedge.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Test

class StreamLayoutTest {
    @Test
    fun feedsTheHeadByInputName() {
        assertEquals(listOf("W", "V"), StreamLayout.of(listOf("embeddings", "valid"), "embeddings", "valid", "oldest_first").arrange("W", "V"))
        assertEquals(listOf("V", "W"), StreamLayout.of(listOf("mask", "buf"), "buf", "mask", "oldest_first").arrange("W", "V"))
    }

    @Test
    fun refusesWhatItCannotBuild() {
        val order = assertThrows(IllegalArgumentException::class.java) {
            StreamLayout.of(listOf("embeddings", "valid"), "embeddings", "valid", "newest_first")
        }
        assertEquals("the manifest's streaming order 'newest_first' is not one this app builds (oldest_first)", order.message)
        assertThrows(IllegalArgumentException::class.java) { StreamLayout.of(listOf("x", "valid"), "embeddings", "valid", "oldest_first") }
        assertThrows(IllegalArgumentException::class.java) { StreamLayout.of(listOf("valid"), "embeddings", "valid", "oldest_first") }
    }
}
