using TransferLearning.Datasets;
using TransferLearning.Models;
using TransferLearning.Native;

namespace Flowers;

/// <summary>A wrong command line: the message says what to change. Exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>Turns every way of failing into one line on stderr and an exit code.</summary>
internal static class Failure
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int BadUsage = 2;

    public static int Usage(Session session, string message)
    {
        WriteLine(session, $"{message} (see --help)");
        return BadUsage;
    }

    public static int Report(Session session, Exception e)
    {
        e = Unwrap(e);
        switch (e)
        {
            case UsageException:
                return Usage(session, e.Message);
            case OperationCanceledException when session.Stop.IsRequested:
                WriteLine(session, "cancelled; nothing was saved.");
                return session.Stop.ExitCode;
            case FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException or IOException
                or ModelFileException or InvalidImageException or TorchNativeLoadException or ArgumentException
                or InvalidOperationException or InvalidDataException or NotSupportedException or FormatException
                or HttpRequestException or DllNotFoundException:
                WriteLine(session, e.Message);
                return Failed;
            default:
                // Unexpected: still one line, with the type so it can be reported.
                WriteLine(session, $"unexpected {e.GetType().Name}: {e.Message}");
                return Failed;
        }
    }

    public static void WriteLine(Session session, string message)
    {
        var oneLine = string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        session.Error.WriteLine($"flowers: error: {oneLine}");
    }

    /// <summary>The exception that says what went wrong: wrappers (aggregate, type initializer, reflection) are peeled off.</summary>
    internal static Exception Unwrap(Exception e)
    {
        while (true)
        {
            switch (e)
            {
                case AggregateException { InnerExceptions.Count: 1 } a:
                    e = a.InnerExceptions[0];
                    continue;
                case TypeInitializationException { InnerException: { } inner }:
                    e = inner;
                    continue;
                case System.Reflection.TargetInvocationException { InnerException: { } inner }:
                    e = inner;
                    continue;
                default:
                    return e;
            }
        }
    }
}
