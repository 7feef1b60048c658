// Compile-only stand-ins (tests/test_app_contract.py): just the signatures the app's activities and runners call, so
// kotlinc checks the app's own code without an Android SDK. Not the real APIs: a real build checks those.
@file:Suppress("unused", "UNUSED_PARAMETER")
package android.os
class Bundle
object SystemClock { @JvmStatic fun elapsedRealtimeNanos(): Long = 0 }
object Build { const val MANUFACTURER = ""; const val MODEL = ""; val SUPPORTED_ABIS = arrayOf(""); object VERSION { const val RELEASE = "" } }
