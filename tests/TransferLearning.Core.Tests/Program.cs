using TransferLearning.Models;

namespace TransferLearning.Core.Tests;

/// <summary>
/// The test assembly is also a small program (the test host never calls it), so tests can run library code in a child
/// process and kill it: <c>dotnet TransferLearning.Core.Tests.dll write-and-wait FILE [named]</c> starts an atomic write
/// of FILE, writes 1 MB, prints "writing" and waits inside the write until it is killed. "named" forces the named
/// temporary file that systems without unnamed files use. It installs no signal handler: since .NET 10, SIGTERM ends it
/// at once, as it ends any application using the library that does not handle the signal itself.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        if (args is not ["write-and-wait", var path, .. var rest] || rest is not ([] or ["named"]))
        {
            Console.Error.WriteLine("usage: TransferLearning.Core.Tests write-and-wait FILE [named]");
            return 2;
        }

        AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[1 << 20]);
            stream.Flush();
            Console.WriteLine("writing");
            Thread.Sleep(Timeout.Infinite);
        }, allowUnnamed: rest is []);
        return 0;
    }
}
