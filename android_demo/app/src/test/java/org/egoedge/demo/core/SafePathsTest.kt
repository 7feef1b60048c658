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

    @Test
    fun followsSymlinksBeforeDeciding() {
        val outside = File(root, "files/secret").apply { mkdirs() }
        val target = File(outside, "model.pte").apply { writeText("x") }
        // A link inside the push folder that points out of it is refused; one that points in is accepted.
        val out = File(push, "escape.pte").toPath()
        Files.createSymbolicLink(out, target.toPath())
        assertNull(SafePaths.resolveInside(out.toString(), roots))
        val dirLink = File(push, "linked").toPath()
        Files.createSymbolicLink(dirLink, outside.toPath())
        assertNull(SafePaths.resolveInside("$dirLink/model.pte", roots))
        val inside = File(push, "real.pte").apply { writeText("x") }
        val alias = File(root, "files/alias.pte").toPath()
        Files.createSymbolicLink(alias, inside.toPath())
        assertEquals(inside.canonicalFile, SafePaths.resolveInside(alias.toString(), roots))
    }
}
