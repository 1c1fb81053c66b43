using System.Text;
using Spectre.Console;

namespace Flowers.Tests.Support;

/// <summary>What one run of the CLI did: its exit code, what it printed and what it wrote to stderr.</summary>
internal sealed record CliResult(int ExitCode, string Output, string Error);

/// <summary>Runs the Flowers CLI in this process through its entry point, <see cref="App.RunAsync"/>.</summary>
internal static class FlowersCli
{
    public static Task<CliResult> RunAsync(params string[] args) => RunAsync(args, null);

    /// <summary>Runs a command line; <paramref name="onOutput"/> sees everything printed so far after each write (e.g. to send a stop request at a given point).</summary>
    public static async Task<CliResult> RunAsync(string[] args, Action<string, StopSignals>? onOutput)
    {
        using var stop = new StopSignals(listen: false);
        var output = new WatchingWriter(text => onOutput?.Invoke(text, stop));
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(output),
        });
        console.Profile.Width = 400;
        using var error = new StringWriter();
        var code = await App.RunAsync(args, new Session(console, error, stop));
        return new CliResult(code, output.ToString(), error.ToString());
    }

    /// <summary>The line the CLI writes to stderr for an error.</summary>
    public static string ErrorLine(string message) => $"flowers: error: {message}{Environment.NewLine}";

    /// <summary>The line the CLI writes to stderr for a wrong command line (exit code 2).</summary>
    public static string UsageLine(string message) => ErrorLine($"{message} (see --help)");

    /// <summary>A string writer that reports its whole content after each write.</summary>
    private sealed class WatchingWriter(Action<string> written) : StringWriter
    {
        private readonly Lock _gate = new();

        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            lock (_gate)
            {
                base.Write(value);
            }

            written(ToString());
        }

        public override void Write(string? value)
        {
            lock (_gate)
            {
                base.Write(value);
            }

            written(ToString());
        }

        public override void Write(char[] buffer, int index, int count)
        {
            lock (_gate)
            {
                base.Write(buffer, index, count);
            }

            written(ToString());
        }

        public override string ToString()
        {
            lock (_gate)
            {
                return base.ToString();
            }
        }
    }
}
