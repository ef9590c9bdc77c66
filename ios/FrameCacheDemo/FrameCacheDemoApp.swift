import SwiftUI

@main
struct FrameCacheDemoApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
