// Compile-only stand-ins (tests/test_app_contract.py): just the signatures the app's activities and runners call, so
// kotlinc checks the app's own code without an Android SDK. Not the real APIs: a real build checks those.
@file:Suppress("unused", "UNUSED_PARAMETER")
package android.content
open class Context { val assets: android.content.res.AssetManager = android.content.res.AssetManager(); val filesDir: java.io.File = java.io.File("/") ; fun getExternalFilesDir(t: String?): java.io.File? = null }
class Intent { fun getStringExtra(k: String): String? = null; fun getIntExtra(k: String, d: Int): Int = d; fun getBooleanExtra(k: String, d: Boolean): Boolean = d }
