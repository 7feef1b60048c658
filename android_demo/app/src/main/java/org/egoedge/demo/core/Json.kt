package org.egoedge.demo.core

/**
 * A small JSON writer for the benchmark result (maps, lists, numbers, strings, booleans, null).
 *
 * Kept free of Android's org.json so the result format is unit-tested on the JVM exactly as the
 * app writes it. Non-finite numbers become null: JSON has no NaN.
 */
object Json {
    fun write(value: Any?): String = StringBuilder().also { append(it, value) }.toString()

    private fun append(sb: StringBuilder, value: Any?) {
        when (value) {
            null -> sb.append("null")
            is Boolean -> sb.append(value)
            is Int, is Long, is Short, is Byte -> sb.append(value)
            is Float -> if (value.isFinite()) sb.append(value) else sb.append("null")
            is Double -> if (value.isFinite()) sb.append(value) else sb.append("null")
            is Number -> append(sb, value.toDouble())
            is String -> string(sb, value)
            is Map<*, *> -> {
                sb.append('{')
                value.entries.forEachIndexed { i, (k, v) ->
                    if (i > 0) sb.append(',')
                    string(sb, k.toString())
                    sb.append(':')
                    append(sb, v)
                }
                sb.append('}')
            }
            is Iterable<*> -> list(sb, value.toList())
            is Array<*> -> list(sb, value.toList())
            is FloatArray -> list(sb, value.toList())
            is DoubleArray -> list(sb, value.toList())
            is IntArray -> list(sb, value.toList())
            is LongArray -> list(sb, value.toList())
            else -> throw IllegalArgumentException("cannot write ${value::class.simpleName} as JSON")
        }
    }

    private fun list(sb: StringBuilder, items: List<*>) {
        sb.append('[')
        items.forEachIndexed { i, v ->
            if (i > 0) sb.append(',')
            append(sb, v)
        }
        sb.append(']')
    }

    private fun string(sb: StringBuilder, s: String) {
        sb.append('"')
        for (ch in s) {
            when {
                ch == '"' -> sb.append("\\\"")
                ch == '\\' -> sb.append("\\\\")
                ch == '\n' -> sb.append("\\n")
                ch == '\r' -> sb.append("\\r")
                ch == '\t' -> sb.append("\\t")
                ch < ' ' -> sb.append("\\u%04x".format(ch.code))
                else -> sb.append(ch)
            }
        }
        sb.append('"')
    }
}
