package org.egoedge.demo

import java.io.File

/** Peak resident memory of this process (VmHWM), in MB; null where /proc does not say. */
fun peakRssMb(): Double? = try {
    File("/proc/self/status").readLines().firstOrNull { it.startsWith("VmHWM:") }
        ?.split(Regex("\\s+"))?.getOrNull(1)?.toDoubleOrNull()?.div(1024.0)
} catch (_: Exception) {
    null
}
