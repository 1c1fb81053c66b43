using System.Runtime.CompilerServices;

namespace TransferLearning.Native;

internal static class NativeModuleInitializer
{
    // Runs when this assembly is first used, so that TorchSharp loads on older libstdc++ without a manual call. A failure
    // is not thrown from here: it would reach the caller wrapped in "TypeInitializationException: The type initializer
    // for '<Module>' threw an exception" (and every later use of the assembly would throw that again). The entry points
    // that load networks call EnsureLoaded, which tries again and throws the TorchNativeLoadException itself.
#pragma warning disable CA2255 // A library initializer is the point: users must not have to call anything first.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Initialize()
    {
        try
        {
            TorchNativeLoader.EnsureLoaded();
        }
        catch (TorchNativeLoadException)
        {
            // Reported by the entry points (see above).
        }
    }
}
