plugins {
    alias(libs.plugins.android.application)
}

android {
    namespace = "org.egoedge.demo"
    compileSdk = 36

    defaultConfig {
        applicationId = "org.egoedge.demo" // bench/device_runners/app.py ANDROID_PACKAGE
        minSdk = 26
        targetSdk = 36
        versionCode = 1
        versionName = "0.1.0"
        // Phones and the x86_64 emulator; both runtimes ship these ABIs.
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
        buildConfigField("String", "EXECUTORCH_VERSION", "\"${libs.versions.executorch.get()}\"")
        buildConfigField("String", "LITERT_VERSION", "\"${libs.versions.litert.get()}\"")
    }

    buildFeatures {
        buildConfig = true
        viewBinding = true
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    // Models are copied out of the APK once and memory-mapped from there; stored, not deflated,
    // they copy at disk speed.
    androidResources {
        noCompress += listOf("pte", "tflite", "rgb")
    }
}

dependencies {
    implementation(libs.executorch.android)
    implementation(libs.litert)
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.androidx.activity)
    implementation(libs.material)
    implementation(libs.androidx.camera.core)
    implementation(libs.androidx.camera.camera2)
    implementation(libs.androidx.camera.lifecycle)
    implementation(libs.androidx.camera.view)
    testImplementation(libs.junit)
}
