using TransferLearning.Models;

namespace Flowers;

/// <summary>A wrong command line: the message says what to change. Exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>Turns every way of failing into one line on stderr and an exit code.</summary>
internal static class Failure
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int BadUsage = 2;
    public const int Cancelled = 130;

    public static int Usage(string message)
    {
        WriteLine($"{message} (see --help)");
        return BadUsage;
    }

    public static int Report(Exception e, bool cancelRequested)
    {
        e = Unwrap(e);
        switch (e)
        {
            case UsageException:
                return Usage(e.Message);
            case OperationCanceledException when cancelRequested:
                WriteLine("cancelled; nothing was saved.");
                return Cancelled;
            case FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException or IOException
                or ModelFileException or ArgumentException or InvalidOperationException or InvalidDataException
                or NotSupportedException or FormatException or HttpRequestException:
                WriteLine(e.Message);
                return Failed;
            default:
                // Unexpected: still one line, with the type so it can be reported.
                WriteLine($"unexpected {e.GetType().Name}: {e.Message}");
                return Failed;
        }
    }

    public static void WriteLine(string message)
    {
        var oneLine = string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Console.Error.WriteLine($"flowers: error: {oneLine}");
    }

    private static Exception Unwrap(Exception e)
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
