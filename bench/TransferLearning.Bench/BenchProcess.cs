using System.Diagnostics;

namespace TransferLearning.Bench;

/// <summary>Starts this benchmark program again in a child process (so each side or recipe has its own peak memory).</summary>
internal static class BenchProcess
{
    /// <summary>A start info running this program with <paramref name="args"/>, standard output redirected.</summary>
    public static ProcessStartInfo StartInfo(IEnumerable<string> args)
    {
        var start = new ProcessStartInfo { RedirectStandardOutput = true, UseShellExecute = false, FileName = Environment.ProcessPath! };
        if (string.Equals(Path.GetFileNameWithoutExtension(start.FileName), "dotnet", StringComparison.OrdinalIgnoreCase))
        {
            start.ArgumentList.Add(typeof(BenchProcess).Assembly.Location);
        }

        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        return start;
    }
}
