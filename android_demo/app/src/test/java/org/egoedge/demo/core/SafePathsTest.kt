package org.egoedge.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Test
import java.io.File
import java.nio.file.Files

class SafePathsTest {
    private val root = Files.createTempDirectory("egoedge").toFile()
    private val push = File(root, "files/egoedge").apply { mkdirs() }
    private val roots = listOf(push)

    @Test
    fun acceptsFilesInsideTheFolder() {
        val model = File(push, "student_tflite_int8.tflite").apply { writeText("x") }
        assertEquals(model.canonicalFile, SafePaths.resolveInside(model.path, roots))
        assertEquals(File(push, "sub/result.json").canonicalFile, SafePaths.resolveInside("$push/sub/result.json", roots))
    }

    @Test
    fun refusesTraversalAndOtherFolders() {
        assertNull(SafePaths.resolveInside("$push/../../shared_prefs/x.xml", roots))
        assertNull(SafePaths.resolveInside("${root.path}/files/egoedge-evil/m.tflite", roots))
        assertNull(SafePaths.resolveInside("/data/data/org.egoedge.demo/databases/x", roots))
        assertThrows(IllegalArgumentException::class.java) { SafePaths.require("/etc/passwd", roots, "model") }
    }
}
