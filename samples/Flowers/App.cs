using System.CommandLine;
using Spectre.Console;

namespace Flowers;

/// <summary>Where a run writes and how it is stopped: the console (tables, progress), stderr (errors) and the stop signals.</summary>
internal sealed record Session(IAnsiConsole Console, TextWriter Error, StopSignals Stop)
{
    public CancellationToken Cancellation => Stop.Token;
}

/// <summary>The CLI's entry point: parses the command line, runs the command, turns every outcome into an exit code.</summary>
internal static class App
{
    /// <summary>The process entry: the real console, stderr, Ctrl+C and SIGTERM.</summary>
    public static async Task<int> MainAsync(string[] args)
    {
        using var stop = new StopSignals(listen: true);
        return await RunAsync(args, new Session(AnsiConsole.Console, Console.Error, stop));
    }

    /// <summary>Runs one command line in a session (tests give their own console, error writer and stop source).</summary>
    public static async Task<int> RunAsync(string[] args, Session session)
    {
        try
        {
            var root = Cli.Build(session);
            var parsed = root.Parse(args);
            if (parsed.Errors.Count > 0)
            {
                return Failure.Usage(session, parsed.Errors[0].Message);
            }

            // The session handles signals itself (ProcessTerminationTimeout null): System.CommandLine's own handling
            // would return after 2 s while a save is still under way and leave its temporary file behind.
            var configuration = new InvocationConfiguration
            {
                EnableDefaultExceptionHandler = false,
                ProcessTerminationTimeout = null,
                Output = session.Console.Profile.Out.Writer,
                Error = session.Error,
            };
            return await parsed.InvokeAsync(configuration, session.Cancellation);
        }
        catch (Exception e)
        {
            return Failure.Report(session, e);
        }
    }
}
