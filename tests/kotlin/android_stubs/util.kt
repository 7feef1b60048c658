// Compile-only stand-ins (tests/test_app_contract.py): just the signatures the app's activities and runners call, so
// kotlinc checks the app's own code without an Android SDK. Not the real APIs: a real build checks those.
@file:Suppress("unused", "UNUSED_PARAMETER")
package android.util
object Log { fun e(t: String, m: String, e: Throwable? = null): Int = 0; fun w(t: String, m: String): Int = 0 }
