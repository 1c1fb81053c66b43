using System.Runtime.CompilerServices;

namespace TransferLearning.Datasets.Tests;

internal static class TestAssemblyInitializer
{
    // Tests call TorchSharp directly too; make its native library loadable before any test runs.
    [ModuleInitializer]
    internal static void Initialize() => TransferLearning.Native.TorchNativeLoader.EnsureLoaded();
}
