using System.Runtime.CompilerServices;

namespace TransferLearning.Native;

internal static class NativeModuleInitializer
{
    // Runs when this assembly is first used, so that TorchSharp loads on older libstdc++ without a manual call.
#pragma warning disable CA2255 // A library initializer is the point: users must not have to call anything first.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Initialize() => TorchNativeLoader.EnsureLoaded();
}
