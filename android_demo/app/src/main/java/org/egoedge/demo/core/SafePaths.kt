package org.egoedge.demo.core

import java.io.File

/**
 * Where the benchmark protocol may read and write: a path from an intent extra is accepted only
 * when, resolved (`..` and symbolic links followed), it lies inside one of the allowed folders.
 */
object SafePaths {
    /** `path` resolved, if it is inside one of `roots` (or is one of them); otherwise null. */
    fun resolveInside(path: String, roots: List<File>): File? {
        val file = File(path).canonicalFile
        return if (roots.any { root -> isInside(file, root.canonicalFile) }) file else null
    }

    /** `path` resolved, or an [IllegalArgumentException] naming what it is and where it may be. */
    fun require(path: String, roots: List<File>, what: String): File =
        resolveInside(path, roots)
            ?: throw IllegalArgumentException("$what '$path' is outside ${roots.joinToString(" and ") { it.path }}")

    private fun isInside(file: File, root: File): Boolean {
        var f: File? = file
        while (f != null) {
            if (f == root) return true
            f = f.parentFile
        }
        return false
    }
}
