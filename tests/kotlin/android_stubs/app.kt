// Compile-only stand-ins (tests/test_app_contract.py): just the signatures the app's activities and runners call, so
// kotlinc checks the app's own code without an Android SDK. Not the real APIs: a real build checks those.
@file:Suppress("unused", "UNUSED_PARAMETER")
package android.app
open class Activity : android.content.Context() { val intent: android.content.Intent = android.content.Intent(); open fun onCreate(savedInstanceState: android.os.Bundle?) {}; fun finish() {}; fun runOnUiThread(r: Runnable) {} }
