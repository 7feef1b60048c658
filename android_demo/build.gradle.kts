// Kotlin is built into AGP 9: no kotlin-android plugin to apply.
plugins {
    alias(libs.plugins.android.application) apply false
}
