using static TorchSharp.torch;

namespace TransferLearning.Native;

/// <summary>Device names (<c>cpu</c>, <c>cuda</c>, <c>cuda:N</c>) to TorchSharp devices.</summary>
internal static class TorchDevices
{
    /// <summary>Parses a device name; with <paramref name="checkAvailable"/>, also checks that CUDA is there when asked for.</summary>
    /// <exception cref="ArgumentException">Not a device name.</exception>
    /// <exception cref="InvalidOperationException">CUDA was asked for but is not available.</exception>
    public static Device Parse(string name, bool checkAvailable = true)
    {
        var trimmed = name.Trim().ToLowerInvariant();
        var isCuda = trimmed == "cuda" || (trimmed.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(trimmed.AsSpan(5), out var index) && index >= 0);
        if (trimmed != "cpu" && !isCuda)
        {
            throw new ArgumentException($"'{name}' is not a device name; use 'cpu', 'cuda' or 'cuda:N'.", nameof(name));
        }

        if (checkAvailable && isCuda && !cuda.is_available())
        {
            throw new InvalidOperationException(
                $"Device '{name}' was requested but CUDA is not available: reference a CUDA LibTorch runtime package and run on a machine with a GPU, or use 'cpu'.");
        }

        return checkAvailable ? device(trimmed) : CPU;
    }
}
