plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "com.framecache.demo"
    compileSdk = 34
    // The engine's JNI library is built by ../build-rust.sh (cargo-ndk) into src/main/jniLibs.
    ndkVersion = "26.3.11579264"

    defaultConfig {
        applicationId = "com.framecache.demo"
        minSdk = 24
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a") }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }

    // The bundled model as a plan file (its sidecar and labels inside), compiled from the
    // repository's assets/models by ../build-rust.sh.
    sourceSets["main"].assets.srcDirs("src/main/plans")
    androidResources { noCompress += listOf("fcplan", "fcbundle") }
}

dependencies {
    val camerax = "1.3.4"
    implementation("androidx.camera:camera-core:$camerax")
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.core:core-ktx:1.13.1")
}
